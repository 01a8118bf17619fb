"""tables/: result files in, the paper's tables (LaTeX, Markdown), bar charts and a problem list out."""

from __future__ import annotations

import csv
import itertools
import math
import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from orchestration.results import TRIAL_SCHEMA
from tables.aggregate import Stat, summarize
from tables.build import Report, write_tables
from tables.command import tables_command
from tables.latex import latex_text
from tables.layout import FIGURE_ROWS
from tables.load import ResultsError

DATA = Path(__file__).parent / "data"
SCHEMA = TRIAL_SCHEMA  # what the sweep writes (docs/results-schema.md) is what the tables are fed
TS_DEFENSES = {"ts-ft", "mbtsad", "mbtsad-no-att", "mbtsad-no-hid", "cd", "mbtsad-cft-teacher"}
TABLE2_DEFENSES = ("none", "cft", "reinit", "fine-pruning", "ts-ft", "mbtsad", "fine-mixing", "fine-purifying")
# The cells the bold rule (best among the defenses, None excluded) picks from the paper's Table II numbers.
PAPER_BOLD = {
    ("badnets", "cft", "sst2", "cacc"),
    ("badnets", "mbtsad", "sst2", "asr"),
    ("badnets", "ts-ft", "imdb", "cacc"),
    ("badnets", "fine-mixing", "imdb", "asr"),
    ("lwp", "cft", "sst2", "cacc"),
    ("lwp", "fine-mixing", "sst2", "asr"),
    ("lwp", "mbtsad", "imdb", "cacc"),
    ("lwp", "fine-mixing", "imdb", "asr"),
    ("ep", "cft", "sst2", "cacc"),
    ("ep", "fine-mixing", "sst2", "asr"),
    ("ep", "cft", "imdb", "cacc"),
    ("ep", "fine-purifying", "imdb", "asr"),
}


def trial(
    defense: str = "mbtsad",
    *,
    dataset: str = "sst2",
    attack: str = "badnets",
    seed: int = 0,
    cacc: float | None = 90.0,
    asr: float | None = 10.0,
    status: str = "ok",
    **fields: object,
) -> dict[str, object]:
    """A result row as the sweep writes it; augmentation `ts` for the token-splitting defenses."""
    return {
        "augmentation": "ts" if defense in TS_DEFENSES else None,
        "error": None,
        "model": "bert-base-uncased",
        "wall_s": 1.0,
        **{"dataset": dataset, "attack": attack, "defense": defense, "seed": seed},
        **{"cacc": cacc, "asr": asr, "status": status},
        **fields,
    }


def write_trials(run_dir: Path, rows: list[dict[str, object]], drop: tuple[str, ...] = ()) -> list[Path]:
    """One parquet file per row under run_dir/trials, as the sweep writes them."""
    folder = run_dir / "trials"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in rows:
        trial_id = f"t{len(list(folder.iterdir())):05d}"
        frame = pl.DataFrame([{"trial_id": trial_id, **row}], schema=SCHEMA).drop(drop)
        path = folder / f"{trial_id}.parquet"
        frame.write_parquet(path)
        paths.append(path)
    return paths


def write_select_aug(run_dir: Path, rows: list[tuple[str, str, str, int, float]]) -> None:
    """eq. 9 result files: (dataset, attack, augmentation, seed, mean_ce) each."""
    folder = run_dir / "select_aug"
    folder.mkdir(parents=True, exist_ok=True)
    for dataset, attack, augmentation, seed, mean_ce in rows:
        frame = pl.DataFrame(
            {
                "dataset": [dataset],
                "attack": [attack],
                "augmentation": [augmentation],
                "seed": [seed],
                "mean_ce": [mean_ce],
                "n_samples": [1384],
            }
        )
        frame.write_parquet(folder / f"{dataset}-{attack}-{augmentation}-{seed}.parquet")


def lines(report: Report, name: str) -> list[str]:
    (path,) = [path for path in report.files if path.name == name]
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def paper_table2() -> dict[tuple[str, str, str], dict[str, float]]:
    """The paper's Table II, typed in from the paper: (attack, defense, dataset) -> cacc, asr."""
    with open(DATA / "paper_table2.csv", newline="") as file:
        return {
            (row["attack"], row["defense"], row["dataset"]): {"cacc": float(row["cacc"]), "asr": float(row["asr"])}
            for row in csv.DictReader(file)
        }


def test_paper_table2_as_single_seeds_reproduces_its_cells_and_bold(tmp_path: Path, paper_table2: dict) -> None:
    rows = [
        trial(defense, dataset=dataset, attack=attack, cacc=values["cacc"], asr=values["asr"])
        for (attack, defense, dataset), values in paper_table2.items()
    ]
    write_trials(tmp_path / "run", rows)
    report = write_tables(tmp_path / "run", tmp_path / "out")

    assert report.problems == ()
    table2 = report.grids[1]
    assert [block.label for block in table2.blocks] == ["BadNets", "LWP", "EP"]
    columns = [(dataset, metric) for dataset in ("sst2", "imdb") for metric in ("cacc", "asr")]
    for block, attack in zip(table2.blocks, ("badnets", "lwp", "ep"), strict=True):
        *paper_lines, nad = block.lines  # the paper's rows, then NAD, which the paper has not
        for line, defense in zip(paper_lines, TABLE2_DEFENSES, strict=True):
            for cell, (dataset, metric) in zip(line.cells, columns, strict=True):
                assert f"{cell.stat.mean:.2f}" == f"{paper_table2[attack, defense, dataset][metric]:.2f}"
                assert cell.bold == ((attack, defense, dataset, metric) in PAPER_BOLD), (attack, defense, metric)
        assert nad.label == "NAD" and all(cell.stat is None and not cell.bold for cell in nad.cells)
    tex = lines(report, "table2.tex")
    assert r"BadNets & None\textsuperscript{a} & 91.32 & 89.88 & 93.48 & 89.94 \\" in tex
    assert r" & CFT\textsuperscript{c} & \textbf{91.82} & 65.02 & 93.18 & 85.77 \\" in tex
    assert r" & MBTSAD & 90.17 & \textbf{9.65} & 92.92 & 17.24 \\" in tex
    assert r" & Fine-Mixing & 88.91 & \textbf{12.39} & 92.37 & \textbf{7.56} \\" in tex
    assert r"EP & None & 91.21 & 95.17 & 94.03 & 98.66 \\" in tex
    assert r"\textsuperscript{b}Methods based on pre-trained weights.\par" in tex
    assert not any("eq. 1" in line for line in tex)  # rows without alpha and beta: no note on them
    assert not any(r"\pm" in line for line in tex if line.endswith(r"\\"))
    assert "|  | CFTᶜ | **91.82** | 65.02 | 93.18 | 85.77 |" in lines(report, "tables.md")


def test_three_seeds_give_mean_sample_std_and_count(tmp_path: Path) -> None:
    rows = [
        *(trial("mbtsad", seed=seed, cacc=c, asr=a) for seed, c, a in [(0, 90, 10), (1, 91, 20), (2, 92, 60)]),
        *(trial("cft", seed=seed, cacc=c, asr=a) for seed, c, a in [(0, 88, 50), (1, 89, 52)]),
    ]
    write_trials(tmp_path / "run", rows)
    report = write_tables(tmp_path / "run", tmp_path / "out")

    # asr 10, 20, 60: mean 30, sample std sqrt((400 + 100 + 900) / 2) = 26.458
    mbtsad = report.grids[1].blocks[0].lines[5].cells
    assert mbtsad[0].stat == Stat(mean=91.0, std=1.0, n=3)
    assert mbtsad[1].stat.mean == pytest.approx(30.0)
    assert mbtsad[1].stat.std == pytest.approx(math.sqrt(700))
    tex = lines(report, "table2.tex")
    assert r" & MBTSAD & \textbf{91.00 $\pm$ 1.00} & \textbf{30.00 $\pm$ 26.46} & --- & --- \\" in tex
    assert r" & CFT\textsuperscript{c} & 88.50 $\pm$ 0.71 (n=2) & 51.00 $\pm$ 1.41 (n=2) & --- & --- \\" in tex
    assert r"Mean $\pm$ sample standard deviation over 3 seeds; (n=k): over k seeds.\par" in tex
    assert "|  | MBTSAD | **91.00 ± 1.00** | **30.00 ± 26.46** | — | — |" in lines(report, "tables.md")
    summary = pl.read_csv(tmp_path / "out" / "summary.csv").filter(pl.col("defense") == "mbtsad")
    assert summary.select("n", "cacc_mean", "cacc_std").row(0) == (3, 91.0, 1.0)


def test_summarize_is_per_cell_over_seeds() -> None:
    rows = pl.DataFrame(
        {"cell": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0], "x": [1.0, 2.0, 6.0, 5.0]},
    )
    summary = summarize(rows, ["cell"], ["x"])
    assert summary.rows() == [("a", 3, 3.0, pytest.approx(math.sqrt(7))), ("b", 1, 5.0, None)]


def test_missing_cells_render_as_dashes(tmp_path: Path) -> None:
    write_trials(tmp_path / "run", [trial("mbtsad"), trial("none", cacc=91.0, asr=95.0)])
    report = write_tables(tmp_path / "run", tmp_path / "out")

    table1 = lines(report, "table1.tex")
    assert r" & STRIP & --- & --- & --- & --- \\" in table1
    assert r" & MBTSAD & \textbf{90.00} & \textbf{10.00} & --- & --- \\" in table1
    assert r"LWP & None & --- & --- & --- & --- \\" in table1
    assert r" & TS & --- & --- \\" in lines(report, "table3.tex")
    markdown = lines(report, "tables.md")
    assert "| EP | None | — | — | — | — |" in markdown
    assert "| TS | — | — | — |" in markdown  # the eq. 9 table, with no select_aug results
    assert [path.name for path in report.files if path.suffix == ".png"] == ["sst2-badnets.png"]


def test_eq9_table_bolds_the_largest_mean_cross_entropy(tmp_path: Path) -> None:
    write_trials(tmp_path / "run", [trial("mbtsad")])
    ce = {"ts": (0.53, 0.54), "eda": (0.20, 0.22), "aeda": (0.31, 0.30), "cwea": (0.10, 0.12), "add_trig": (0.4, 0.4)}
    write_select_aug(
        tmp_path / "run",
        [("sst2", "lwp", augmentation, seed, values[seed]) for augmentation, values in ce.items() for seed in (0, 1)],
    )
    report = write_tables(tmp_path / "run", tmp_path / "out")

    tex = lines(report, "eq9.tex")
    assert r"TS & \textbf{0.5350 $\pm$ 0.0071} \\" in tex
    assert r"Add Trig & 0.4000 $\pm$ 0.0000 \\" in tex
    assert r"Augmentation & \multicolumn{1}{c}{SST-2} \\" in tex
    assert r" & LWP \\" in tex


def test_failed_duplicate_incomplete_and_unplaced_rows_are_reported_not_averaged(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_trials(run, [trial(seed=0, cacc=90, asr=10), trial(seed=1, cacc=92, asr=20)])
    write_trials(run, [trial(seed=2, cacc=None, asr=None, status="failed", error="CUDA out of memory")])
    duplicates = write_trials(run, [trial(seed=3, cacc=50, asr=50), trial(seed=3, cacc=60, asr=60, alpha=2.0)])
    write_trials(run, [trial(seed=4, asr=None), trial(seed=5, status="running")])
    write_trials(run, [trial(seed=6, augmentation=None), trial("mbtsad_no_att", seed=0)])
    report = write_tables(run, tmp_path / "out")

    kinds = sorted(problem.kind for problem in report.problems)
    assert kinds == ["duplicate", "failed", "incomplete", "status", "unplaced", "unplaced"]
    messages = "\n".join(problem.message for problem in report.problems)
    assert "trials/t00002.parquet: sst2/badnets/mbtsad/ts seed 2 failed: CUDA out of memory" in messages
    assert f"trials/{duplicates[0].name}, trials/{duplicates[1].name}" in messages
    assert "has no value for asr" in messages
    assert "status 'running'" in messages
    assert "defense 'mbtsad_no_att'" in messages
    assert (tmp_path / "out" / "problems.txt").read_text() == messages + "\n"
    # Only seeds 0 and 1 are averaged.
    assert r" & MBTSAD & \textbf{91.00 $\pm$ 1.41} & \textbf{15.00 $\pm$ 7.07} & --- & --- \\" in lines(
        report, "table2.tex"
    )


def test_mixed_models_are_reported(tmp_path: Path) -> None:
    write_trials(tmp_path / "run", [trial(seed=0), trial(seed=1, model="tiny")])
    report = write_tables(tmp_path / "run", tmp_path / "out")
    assert [problem.message for problem in report.problems] == [
        "the trials mix 2 models (bert-base-uncased: 1, tiny: 1)"
    ]


def test_rows_from_two_code_versions_are_reported(tmp_path: Path) -> None:
    old, new = "source 1a; torch 2.13.0; transformers 5.0", "source 2b; torch 2.13.0; transformers 5.0"
    write_trials(tmp_path / "run", [trial(seed=0, code=old), trial(seed=1, code=new), trial(seed=2, code=new)])
    report = write_tables(tmp_path / "run", tmp_path / "out")
    assert [problem.message for problem in report.problems] == [
        f"the sst2 trials mix 2 code versions ({old}: 1, {new}: 2)"
    ]


def test_each_dataset_may_come_from_its_own_code_version(tmp_path: Path) -> None:
    old, new = "source 1a; torch 2.13.0; transformers 5.0", "source 2b; torch 2.13.0; transformers 5.0"
    write_trials(tmp_path / "run", [trial(seed=0, code=old), trial(seed=0, dataset="imdb", code=new)])
    report = write_tables(tmp_path / "run", tmp_path / "out")
    assert report.problems == ()


def test_malformed_files_are_skipped_and_named(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_trials(run, [trial(seed=0)])
    (missing,) = write_trials(run, [trial(seed=1)], drop=("asr",))
    wrong = run / "trials" / "wrong.parquet"
    pl.DataFrame([{**trial(seed=2), "seed": "two"}]).write_parquet(wrong)
    (run / "trials" / "junk.parquet").write_text("not parquet")
    report = write_tables(run, tmp_path / "out")

    messages = [problem.message for problem in report.problems]
    assert f"trials/{missing.name}: missing column asr; skipped" in messages
    assert "trials/wrong.parquet: column seed has type String, expected Int64; skipped" in messages
    assert any(message.startswith("trials/junk.parquet: not a readable parquet file") for message in messages)
    assert report.grids[1].blocks[0].lines[5].cells[0].stat == Stat(mean=90.0, std=None, n=1)


def test_unusable_results_raise_naming_the_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no result files"):
        write_tables(tmp_path, tmp_path / "out")
    (only,) = write_trials(tmp_path / "run", [trial()], drop=("cacc", "asr"))
    with pytest.raises(ResultsError, match=f"trials/{only.name}: missing columns cacc, asr"):
        write_tables(tmp_path / "run", tmp_path / "out")


def test_command_prints_tables_and_problems_and_fails_clearly(tmp_path: Path) -> None:
    write_trials(tmp_path / "run", [trial(seed=0), trial(seed=1, status="failed", error="boom")])
    result = CliRunner().invoke(tables_command, ["--results", str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Table II" in result.output
    assert "1 problem(s) found" in result.output
    assert "failed: boom" in result.output
    assert (tmp_path / "out" / "tables.tex").is_file()

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(tables_command, ["--results", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2  # bad input, as every command's
    assert "no result files" in result.output


def test_latex_text_escapes_specials() -> None:
    assert latex_text(r"a_b & 50% #1 {x} ~ ^ \ $") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$"
    )
    assert latex_text("α ± β — “cb”") == r"$\alpha$ $\pm$ $\beta$ --- ``cb''"


@pytest.fixture(scope="module")
def full_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    """Every table row on both datasets and all attacks over three seeds, plus an attack with odd characters."""
    run = tmp_path_factory.mktemp("full") / "run"
    cells = itertools.product(("sst2", "imdb"), ("badnets", "lwp", "ep", "addsent"), FIGURE_ROWS, range(3))
    rows = [
        trial(
            row.defense,
            dataset=dataset,
            attack=attack,
            seed=seed,
            augmentation=row.augmentation,
            cacc=85 + (7 * seed + len(row.label)) % 9 + 0.123,
            asr=(13 * seed + 7 * len(row.label)) % 99 + 0.5,
        )
        for dataset, attack, row, seed in cells
    ]
    rows.append(trial(attack="my_attack&#1%", cacc=88.0, asr=12.0))
    write_trials(run, rows)
    write_select_aug(
        run,
        [
            ("sst2", "lwp", aug, seed, 0.1 * seed + 0.01 * len(aug))
            for aug in ("ts", "eda", "aeda", "cwea", "add_trig")
            for seed in range(3)
        ],
    )
    out = run.parent / "out"
    return write_tables(run, out), out


def test_nad_is_a_table2_row_and_mbtsad_with_the_cft_teacher_a_table4_row(full_grid: tuple[Report, Path]) -> None:
    report, _ = full_grid
    table2, table4 = report.grids[1], report.grids[3]
    assert [line.label for line in table2.blocks[0].lines][-1] == "NAD"
    assert [line.label for line in table4.blocks[0].lines][-1] == "MBTSAD-CFT"
    for grid, label in ((table2, "NAD"), (table4, "MBTSAD-CFT")):
        (line,) = [line for line in grid.blocks[1].lines if line.label == label]
        assert all(cell.stat is not None and cell.stat.n == 3 for cell in line.cells)
    markdown = "\n".join(lines(report, "tables.md"))
    assert "|  | NADᵉ | 89.12 ± 3.61 |" in markdown and "|  | MBTSAD-CFTᶜ | **90.12 ± 3.61** |" in markdown
    assert "Neural Attention Distillation (Li et al., 2021), not in the paper" in markdown


def test_full_grid_writes_every_output_atomically(full_grid: tuple[Report, Path]) -> None:
    report, out = full_grid
    names = {path.relative_to(out).as_posix() for path in report.files}
    tables = {f"table{n}.tex" for n in range(1, 5)} | {"eq9.tex", "tables.tex", "tables.md"}
    figures = {f"figures/{d}-{a}.png" for d in ("sst2", "imdb") for a in ("badnets", "lwp", "ep", "addsent")}
    assert tables | figures | {"figures/sst2-my_attack_1_.png"} <= names
    assert all((out / name).read_bytes().startswith(b"\x89PNG") for name in figures)
    assert not [path for path in out.rglob("*") if path.name.endswith(".tmp")]
    assert report.problems == ()
    assert [block.label for block in report.grids[0].blocks] == ["BadNets", "LWP", "EP", "AddSent", "my_attack&#1%"]


def test_latex_document_compiles_with_pdflatex(full_grid: tuple[Report, Path], tmp_path: Path) -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("pdflatex is missing on CI; .ci/install-latex.sh installs it")
        pytest.skip("pdflatex is not installed (run .ci/install-latex.sh); with CI=true this fails instead")
    _, out = full_grid
    assert (out / "tables.tex").read_text().count(r"\begin{table}") == 5
    shutil.copy(out / "tables.tex", tmp_path)
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 0
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log, "a table is wider than the page"
    assert "Output written on tables.pdf" in log


def test_weights_note_names_the_alpha_and_beta_each_attack_ran_with(tmp_path: Path) -> None:
    rows = [
        trial("none", alpha=None, beta=None),
        trial("mbtsad", alpha=1.0, beta=1.0),
        trial("cd", alpha=1.0, beta=1.0),
        trial("mbtsad", attack="lwp", alpha=0.35, beta=0.0),
        trial("mbtsad", attack="lwp", seed=1, alpha=1.6, beta=2.72),
    ]
    write_trials(tmp_path / "run", rows)
    report = write_tables(tmp_path / "run", tmp_path / "out")
    (note,) = [text for _, text in report.grids[1].notes if "eq. 1" in text]
    assert note.startswith("α and β (eq. 1) as run: BadNets 1, 1; LWP 0.35, 0 or 1.6, 2.72.")
    assert "tuned" not in note  # the rows say which values ran, not that they were tuned
    assert not any("eq. 1" in text for _, text in report.grids[2].notes)  # Table III has no MBTSAD row


def test_weights_note_adds_the_tuned_distillation_settings(tmp_path: Path) -> None:
    rows = [
        trial("mbtsad", alpha=1.0, beta=1.0),
        trial("mbtsad", attack="lwp", alpha=0.35, beta=0.0, distil_lr=1e-3, distil_epochs=3, attention_axis="row"),
    ]
    write_trials(tmp_path / "run", rows)
    report = write_tables(tmp_path / "run", tmp_path / "out")
    (note,) = [text for _, text in report.grids[1].notes if "eq. 1" in text]
    assert "BadNets 1, 1; LWP 0.35, 0 (distillation lr 0.001, 3 epochs, attention axis row)." in note


def test_weights_note_says_how_tune_chose_the_settings_and_reads_rows_without_a_label(tmp_path: Path) -> None:
    write_trials(tmp_path / "run", [trial("mbtsad", alpha=1.4, beta=4.6)], drop=("tuned_by",))  # an older row
    labelled = [
        trial("mbtsad", attack="lwp", alpha=0.5, beta=0.0, tuned_by="proxy"),
        trial("mbtsad", attack="ep", alpha=2.0, beta=1.0, distil_epochs=2, tuned_by="oracle from lwp"),
    ]
    write_trials(tmp_path / "run", labelled)
    report = write_tables(tmp_path / "run", tmp_path / "out")
    (note,) = [text for _, text in report.grids[1].notes if "eq. 1" in text]
    assert "BadNets 1.4, 4.6; LWP 0.5, 0 (tuned by proxy); EP 2, 1 (2 epochs, tuned by oracle from lwp)." in note
    assert "Tuned by oracle: scored on dev with the attacker's own trigger" in note
    write_trials(tmp_path / "old", [trial("mbtsad", alpha=1.4, beta=4.6)], drop=("tuned_by",))
    notes = write_tables(tmp_path / "old", tmp_path / "old-out").grids[1].notes
    (old,) = [text for _, text in notes if "eq. 1" in text]
    assert "BadNets 1.4, 4.6." in old and "Tuned by" not in old


def test_paired_comparison_differences_mbtsad_and_each_baseline_seed_by_seed(tmp_path: Path) -> None:
    asr = {  # seed: (mbtsad, fine-mixing, ts-ft); fine-purifying only in seed 0
        0: (20.0, 30.0, 50.0),
        1: (40.0, 35.0, 60.0),
        2: (10.0, 25.0, 45.0),
    }
    rows = [trial("fine-purifying", seed=0, asr=70.0, cacc=80.0)]
    for seed, (ours, mixing, teacher) in asr.items():
        rows += [
            trial("mbtsad", seed=seed, asr=ours, cacc=85.0),
            trial("fine-mixing", seed=seed, asr=mixing, cacc=86.0 + seed),
            trial("ts-ft", seed=seed, asr=teacher, cacc=85.5),
            trial("nad", seed=seed, asr=ours + 30.0, cacc=84.0),
            trial("mbtsad-cft-teacher", seed=seed, asr=ours + seed, cacc=85.0),
            trial("aug-ft", seed=seed, asr=99.0, augmentation="eda"),  # not a baseline of the comparison
        ]
    write_trials(tmp_path / "run", rows)
    report = write_tables(tmp_path / "run", tmp_path / "out")
    summary = pl.read_csv(tmp_path / "out" / "paired.csv")
    assert summary["baseline"].to_list() == ["fine-mixing", "fine-purifying", "ts-ft", "nad", "mbtsad-cft-teacher"]
    mixing, purifying, teacher, nad, cft_teacher = summary.iter_rows(named=True)
    assert (nad["seeds"], nad["d_asr_mean"], nad["d_cacc_mean"], nad["mbtsad_lower_asr"]) == (3, -30.0, 1.0, 3)
    assert cft_teacher["d_asr_seeds"] == "0: +0.00; 1: -1.00; 2: -2.00" and cft_teacher["mbtsad_lower_asr"] == 2
    assert mixing["seeds"] == 3 and mixing["d_asr_mean"] == pytest.approx(-20 / 3)  # -10, +5, -15
    assert mixing["d_asr_std"] == pytest.approx(10.408, abs=1e-3) and mixing["mbtsad_lower_asr"] == 2
    assert (mixing["d_asr_min"], mixing["d_asr_max"]) == (-15.0, 5.0)
    assert mixing["d_cacc_mean"] == pytest.approx(-2.0)  # 85 against 86, 87, 88
    assert purifying["seeds"] == 1 and purifying["d_asr_mean"] == -50.0 and purifying["d_asr_std"] is None
    assert teacher["d_asr_mean"] == pytest.approx(-85 / 3) and teacher["mbtsad_lower_asr"] == 3
    text = (tmp_path / "out" / "paired.md").read_text()
    assert mixing["d_asr_seeds"] == "0: -10.00; 1: +5.00; 2: -15.00"
    row = "| SST-2 | BadNets | fine-mixing | 3 | -6.67 ± 10.41 | -15.00 to +5.00 | -2.00 ± 1.00 | 2 of 3 "
    assert row + "| 0: -10.00; 1: +5.00; 2: -15.00 |" in text
    assert any(path.name == "paired.md" for path in report.files)


def test_several_run_folders_read_as_one_run_counting_a_shared_trial_once(tmp_path: Path) -> None:
    sst2, imdb = tmp_path / "sst2", tmp_path / "imdb"
    write_trials(sst2, [trial(seed=0, cacc=90, asr=10), trial(seed=1, cacc=92, asr=20)])
    write_trials(imdb, [trial(dataset="imdb", seed=0, cacc=80, asr=30)])
    shared = pl.read_parquet(sst2 / "trials" / "t00000.parquet")  # the same trial, reused from the store
    shared.write_parquet(imdb / "trials" / "t00000-again.parquet")
    write_select_aug(imdb, [("sst2", "lwp", "ts", 0, 0.5)])
    report = write_tables([sst2, imdb], tmp_path / "out")
    assert report.problems == ()
    sst2_cells = r"\textbf{91.00 $\pm$ 1.41} & \textbf{15.00 $\pm$ 7.07}"
    row = rf" & MBTSAD & {sst2_cells} & \textbf{{80.00 (n=1)}} & \textbf{{30.00 (n=1)}} \\"
    assert row in lines(report, "table2.tex")
    assert r"TS & \textbf{0.5000} \\" in lines(report, "eq9.tex")

    conflicting = shared.with_columns(pl.lit(50.0).alias("asr"))  # one cell, two different results
    conflicting.write_parquet(imdb / "trials" / "t00000-changed.parquet")
    report = write_tables([sst2, imdb], tmp_path / "out")
    (problem,) = report.problems
    assert problem.kind == "duplicate"
    assert f"{sst2.as_posix()}/trials/t00000.parquet" in problem.message
    assert f"{imdb.as_posix()}/trials/t00000-changed.parquet" in problem.message

    result = CliRunner().invoke(
        tables_command, ["--results", str(sst2), "--results", str(imdb), "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 0, result.output
    assert "1 problem(s) found" in result.output


def test_wall_time_per_row_sums_the_trials_minutes(tmp_path: Path) -> None:
    write_trials(
        tmp_path / "run",
        [
            trial("none", seed=0, wall_s=600.0),
            trial("none", seed=1, wall_s=1200.0),
            trial("none", seed=2, wall_s=300.0),
            trial("mbtsad", seed=0, wall_s=90.0),
            trial("aug-ft", seed=0, augmentation="eda", wall_s=30.0),
        ],
    )
    write_tables(tmp_path / "run", tmp_path / "out")
    wall = pl.read_csv(tmp_path / "out" / "wall.csv")
    assert wall["defense"].to_list() == ["none", "mbtsad", "aug-ft"]  # longest first
    none = wall.row(0, named=True)
    assert (none["trials"], none["minutes"], none["median_minutes"]) == (3, 35.0, 10.0)
    text = (tmp_path / "out" / "wall.md").read_text()
    assert "| SST-2 | aug-ft (EDA) | 1 | 0.5 | 0.5 |" in text
    assert "| SST-2 | all | 5 | 37.0 | |" in text


def test_model_size_verdict_pairs_each_models_seeds(tmp_path: Path) -> None:
    """tables/model_size.py: per-model seed means and paired MBTSAD-minus-baseline differences beside the paper."""
    from tables.model_size import model_size_markdown, read_rows

    def row(defense: str, seed: int, asr: float, augmentation: str | None = None) -> dict[str, object]:
        return {"dataset": "sst2", "attack": "badnets", "defense": defense, "augmentation": augmentation,
                "seed": seed, "status": "ok", "cacc": 90.0 - seed, "asr": asr, "clean_flip": 10.0}

    rows = [row("none", s, 99.0) for s in (0, 1)] + [row("mbtsad", 0, 20.0, "ts"), row("mbtsad", 1, 40.0, "ts")]
    rows += [row("ts-ft", 0, 30.0, "ts"), row("ts-ft", 1, 35.0, "ts"), row("fine-mixing", 0, 25.0)]
    folder = tmp_path / "rows"
    folder.mkdir()
    pl.DataFrame(rows).write_parquet(folder / "a.parquet")
    text = model_size_markdown({"small": read_rows(folder)})
    assert "| BadNets | (b) MBTSAD ASR | 30.00 ± 14.14 (2) | 9.65 |" in text
    assert "| BadNets | (c) paired MBTSAD − ts-ft ΔASR | -2.50, lower in 1 of 2 | -23.73 |" in text
    assert "| BadNets | (g) paired MBTSAD − fine-mixing ΔASR | -5.00, lower in 1 of 1 | -6.14 |" in text
    assert "| LWP | (a) M_b ASR | — | 94.41 |" in text


def test_tuned_rows_pair_each_choice_with_the_grid_and_refuse_another_backdoored_model(tmp_path: Path) -> None:
    """tables/tuned_rows.py: MBTSAD per tuning choice against the grid's baselines; a `none` row that differs
    from the grid's (another M_b) stops the table with the folder named."""
    from tables.tuned_rows import main

    def row(defense: str, seed: int, asr: float, cacc: float = 90.0, augmentation: str | None = None) -> dict:
        return {"dataset": "sst2", "attack": "lwp", "defense": defense, "augmentation": augmentation,
                "seed": seed, "status": "ok", "cacc": cacc, "asr": asr, "clean_flip": 10.0}

    def folder(name: str, rows: list[dict]) -> Path:
        (tmp_path / name).mkdir()
        pl.DataFrame(rows).write_parquet(tmp_path / name / "rows.parquet")
        return tmp_path / name

    grid = folder("grid", [row("none", s, 99.0) for s in (0, 1)] + [row("fine-mixing", s, 15.0) for s in (0, 1)]
                  + [row("mbtsad", s, 30.0, 85.0, "ts") for s in (0, 1)])
    mbtsad = [row("mbtsad", 0, 10.0, 88.0, "ts"), row("mbtsad", 1, 25.0, 86.0, "ts")]
    proxy = folder("proxy", [row("none", 0, 99.0), *mbtsad])
    out = tmp_path / "compare.md"
    main(["--grid", str(grid), "--rows", f"oracle={grid}", "--rows", f"proxy={proxy}", "--out", str(out)])
    lines = out.read_text().splitlines()
    assert "| lwp | oracle | 2 | 30.00 ± 0.00 | 10.00 | -5.00 | 0 of 2 | — | +15.00 (0 of 2) | — |" in lines
    assert "| lwp | proxy | 2 | 17.50 ± 10.61 | 10.00 | -3.00 | 1 of 2 | — | +2.50 (1 of 2) | — |" in lines
    other = folder("other", [row("none", 1, 98.0), row("mbtsad", 1, 5.0, 89.0, "ts")])
    with pytest.raises(SystemExit):
        main(["--grid", str(grid), "--rows", f"other={other}", "--out", str(tmp_path / "x.md")])
    assert not (tmp_path / "x.md").exists()
