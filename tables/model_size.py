"""The model-size verdict: claims (a), (b), (c) and (g) on SST-2 for each encoder we ran, beside the paper's
BERT-base (Table II), with the paired per-seed differences of MBTSAD to TS-FT, Fine-Mixing and Fine-Purifying.

`python -m tables.model_size --rows "MiniLM-L6 (22.7M)=docs/results/cpu/trials-sst2" --rows
"MPNet-base (110M)=docs/results/base/base/trials,docs/results/base/base-gate/trials" --out docs/results/model-size.md`:
each `--rows` names folders of trial rows (docs/results-schema.md). Reads result files only.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from tables.build import write_atomic
from tables.layout import ATTACKS
from tables.paired import paired_differences

# The paper's Table II, SST-2, BERT-base: (attack, defence) -> (CACC, ASR).
PAPER_SST2: dict[tuple[str, str], tuple[float, float]] = {
    ("badnets", "none"): (91.32, 89.88),
    ("badnets", "cft"): (91.82, 65.02),
    ("badnets", "ts-ft"): (90.45, 33.38),
    ("badnets", "mbtsad"): (90.17, 9.65),
    ("badnets", "fine-mixing"): (88.34, 15.79),
    ("badnets", "fine-purifying"): (88.74, 16.01),
    ("lwp", "none"): (90.66, 94.41),
    ("lwp", "cft"): (91.43, 93.43),
    ("lwp", "ts-ft"): (90.74, 25.98),
    ("lwp", "mbtsad"): (90.72, 15.90),
    ("lwp", "fine-mixing"): (88.91, 12.39),
    ("lwp", "fine-purifying"): (88.57, 15.13),
    ("ep", "none"): (91.21, 95.17),
    ("ep", "cft"): (91.56, 93.78),
    ("ep", "ts-ft"): (90.88, 38.38),
    ("ep", "mbtsad"): (89.07, 12.83),
    ("ep", "fine-mixing"): (88.52, 11.18),
    ("ep", "fine-purifying"): (88.19, 14.39),
}
ROWS = ("none", "cft", "ts-ft", "mbtsad", "fine-mixing", "fine-purifying")
COLUMNS = ("dataset", "attack", "defense", "augmentation", "seed", "status", "cacc", "asr", "clean_flip")


def read_rows(*folders: Path) -> pl.DataFrame:
    """The finished SST-2 rows of folders of trial Parquet files, Table II's main rows only; a cell in several
    folders (a run and the gate run it reused) counts once."""
    files = [f for folder in folders for f in sorted(folder.glob("*.parquet"))]
    if not files:
        raise FileNotFoundError(f"{', '.join(map(str, folders))}: no trial rows (*.parquet)")
    rows = pl.concat([pl.read_parquet(f, columns=list(COLUMNS)) for f in files], how="vertical_relaxed")
    rows = rows.filter(pl.col("status") == "ok", pl.col("dataset") == "sst2", pl.col("defense").is_in(ROWS))
    return rows.unique(["attack", "defense", "augmentation", "seed"], keep="first", maintain_order=True)


def seed_means(rows: pl.DataFrame) -> dict[tuple[str, str], dict[str, float | int | None]]:
    """(attack, defence) -> seeds and the mean and sample std over seeds of ASR, CACC and the clean flip."""
    table = rows.group_by("attack", "defense").agg(
        pl.len().alias("seeds"),
        *(pl.col(c).mean().alias(c) for c in ("asr", "cacc", "clean_flip")),
        pl.col("asr").std().alias("asr_std"),
    )
    return {(r["attack"], r["defense"]): r for r in table.iter_rows(named=True)}


def _cell(means: Mapping[tuple[str, str], Mapping], attack: str, defense: str) -> str:
    row = means.get((attack, defense))
    if row is None:
        return "—"
    spread = "" if row["asr_std"] is None else f" ± {row['asr_std']:.2f}"
    return f"{row['asr']:.2f}{spread} ({row['seeds']})"


def _paired(differences: pl.DataFrame, attack: str, baseline: str) -> str:
    rows = differences.filter(pl.col("attack") == attack, pl.col("baseline") == baseline)
    if rows.is_empty():
        return "—"
    lower = int((rows["d_asr"] < 0).sum())
    return f"{rows['d_asr'].mean():+.2f}, lower in {lower} of {len(rows)}"


def model_size_markdown(models: Mapping[str, pl.DataFrame]) -> str:
    """Per attack and claim: each model's seed means (seeds in brackets) and paired differences, and the paper's."""
    means = {name: seed_means(rows) for name, rows in models.items()}
    paired = {name: paired_differences(rows) for name, rows in models.items()}
    header = "| attack | claim: quantity | " + " | ".join(models) + " | paper (BERT-base) |"
    lines = [header, "|---|---|" + "--:|" * (len(models) + 1)]
    for attack in ("badnets", "lwp", "ep"):
        label = ATTACKS.get(attack, attack)
        quantities = [
            ("(a) M_b ASR", lambda m, a=attack: _cell(m, a, "none"), PAPER_SST2[(attack, "none")][1]),
            ("(b) MBTSAD ASR", lambda m, a=attack: _cell(m, a, "mbtsad"), PAPER_SST2[(attack, "mbtsad")][1]),
            ("(b) MBTSAD CACC drop", lambda m, a=attack: _drop(m, a), _paper_drop(attack)),
            ("(b) MBTSAD clean flip (ASR's floor)", lambda m, a=attack: _flip(m, a), None),
            ("(c) TS-FT ASR", lambda m, a=attack: _cell(m, a, "ts-ft"), PAPER_SST2[(attack, "ts-ft")][1]),
            ("(c) CFT ASR", lambda m, a=attack: _cell(m, a, "cft"), PAPER_SST2[(attack, "cft")][1]),
            ("(g) Fine-Mixing ASR", lambda m, a=attack: _cell(m, a, "fine-mixing"),
             PAPER_SST2[(attack, "fine-mixing")][1]),
            ("(g) Fine-Purifying ASR", lambda m, a=attack: _cell(m, a, "fine-purifying"),
             PAPER_SST2[(attack, "fine-purifying")][1]),
        ]
        for name, value, paper in quantities:
            shown = "—" if paper is None else f"{paper:.2f}"
            lines.append(f"| {label} | {name} | " + " | ".join(value(means[m]) for m in models) + f" | {shown} |")
        for baseline, text in (("ts-ft", "(c)"), ("fine-mixing", "(g)"), ("fine-purifying", "(g)")):
            paper_diff = PAPER_SST2[(attack, "mbtsad")][1] - PAPER_SST2[(attack, baseline)][1]
            lines.append(
                f"| {label} | {text} paired MBTSAD − {baseline} ΔASR | "
                + " | ".join(_paired(paired[m], attack, baseline) for m in models)
                + f" | {paper_diff:+.2f} |"
            )
    lines += [
        "",
        "- ASR cells: mean ± sample std over seeds (seeds in brackets). Paired: MBTSAD minus the baseline on the same",
        "  M_b, mean over seeds, and in how many seeds MBTSAD's ASR is the lower; the paper's column is the difference",
        "  of its means (one run). CACC drop: M_b's CACC minus MBTSAD's, on the means.",
    ]
    return "\n".join(lines) + "\n"


def _drop(means: Mapping[tuple[str, str], Mapping], attack: str) -> str:
    before, after = means.get((attack, "none")), means.get((attack, "mbtsad"))
    return "—" if before is None or after is None else f"{before['cacc'] - after['cacc']:.2f}"


def _flip(means: Mapping[tuple[str, str], Mapping], attack: str) -> str:
    row = means.get((attack, "mbtsad"))
    return "—" if row is None else f"{row['clean_flip']:.2f}"


def _paper_drop(attack: str) -> float:
    return PAPER_SST2[(attack, "none")][0] - PAPER_SST2[(attack, "mbtsad")][0]


def labelled_rows(parser: argparse.ArgumentParser, items: Sequence[str]) -> dict[str, pl.DataFrame]:
    """`--rows LABEL=FOLDER[,FOLDER]` options as label -> read_rows of the folders; a malformed one is a usage error."""
    rows = {}
    for item in items:
        label, sep, folders = item.partition("=")
        if not sep:
            parser.error(f"--rows {item!r} is not LABEL=FOLDER")
        rows[label] = read_rows(*(Path(f) for f in folders.split(",")))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", action="append", required=True, help="LABEL=FOLDER[,FOLDER] of trial rows (repeat)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write_atomic(args.out, model_size_markdown(labelled_rows(parser, args.rows)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
