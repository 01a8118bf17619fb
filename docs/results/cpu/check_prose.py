"""The numbers the top section of docs/results/README.md quotes, computed from the committed rows.

`python docs/results/cpu/check_prose.py` (from the repository root) reads `trials-sst2/`, `trials-imdb/`,
`summary-eq9.csv` and eq. 9's seed-0 scores in `../fidelity/s0-def/select_aug/` (the files `cli.py tables`
read; columns: docs/results-schema.md) and prints every count, range and comparison the prose states, so each
one is copied from here, not retyped. It reads result files only, as the `tables` layer does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from tables.load import TRIAL_KEY
from tables.paired import paired_differences

HERE = Path(__file__).resolve().parent
ATTACKS = ("badnets", "lwp", "ep")
ABLATIONS = ("mbtsad-no-hid", "mbtsad-no-att", "cd")  # Table IV's columns beside the full loss
AUGMENTATIONS = ("eda", "aeda", "cwea", "add_trig")  # Table III's rows beside TS (the TS-FT row)
CELL = ("defense", "augmentation")


def read_trials(folder: Path) -> pl.DataFrame:
    """Every row of `folder/*.parquet`; a failed trial or a repeated cell is an error naming the file."""
    rows = pl.read_parquet(sorted(folder.glob("*.parquet")), include_file_paths="file")
    if rows.is_empty():
        raise SystemExit(f"{folder}: no trial rows")
    for row in rows.filter(pl.col("status") != "ok").iter_rows(named=True):
        raise SystemExit(f"{row['file']}: status {row['status']!r}, not ok ({row['error']})")
    repeated = rows.filter(pl.struct(TRIAL_KEY).is_duplicated())
    if not repeated.is_empty():
        raise SystemExit(f"{folder}: the same cell in several files: {', '.join(repeated['file'])}")
    return rows


def cell(rows: pl.DataFrame, attack: str, defense: str, augmentation: str | None = None) -> pl.DataFrame:
    """One (attack, defense, augmentation) cell's rows, by seed."""
    return rows.filter(
        pl.col("attack") == attack, pl.col("defense") == defense, pl.col("augmentation").eq_missing(augmentation)
    ).sort("seed")


def mean_std(values: pl.Series) -> str:
    return f"{values.mean():.2f} ± {values.std():.2f}" if values.len() > 1 else f"{values.mean():.2f}"


def seeds(values: Iterable[float], sign: bool = False) -> str:
    return "; ".join(f"{value:+.2f}" if sign else f"{value:.2f}" for value in values)


def span(values: Iterable[float]) -> str:
    values = sorted(values)
    return f"{values[0]:+.2f} to {values[-1]:+.2f}"


def versus(full: pl.DataFrame, other: pl.DataFrame) -> pl.DataFrame:
    """Per seed: `full` minus `other` in ASR and CACC, on the same M_b."""
    return full.join(other, on="seed", suffix="_other").select(
        "seed",
        (pl.col("asr") - pl.col("asr_other")).alias("d_asr"),
        (pl.col("cacc") - pl.col("cacc_other")).alias("d_cacc"),
    )


def asr_by_seed(rows: pl.DataFrame, attack: str, cells: dict[str, tuple[str, str | None]]) -> pl.DataFrame:
    """One row per seed holding every named (defense, augmentation) cell, one ASR column per name."""
    frames = [cell(rows, attack, *key).select("seed", pl.col("asr").alias(name)) for name, key in cells.items()]
    joined = frames[0]
    for frame in frames[1:]:
        joined = joined.join(frame, on="seed")
    return joined.sort("seed")


def sst2_main(rows: pl.DataFrame) -> list[str]:
    """Claims (a)-(c): M_b, MBTSAD, TS-FT and CFT over the seeds."""
    lines = ["## SST-2: M_b, MBTSAD, TS-FT, CFT (ASR; CACC)"]
    for attack in ATTACKS:
        backdoored, mbtsad = cell(rows, attack, "none"), cell(rows, attack, "mbtsad", "ts")
        teacher, cft = cell(rows, attack, "ts-ft", "ts"), cell(rows, attack, "cft")
        ordered = asr_by_seed(rows, attack, {"mbtsad": ("mbtsad", "ts"), "ts": ("ts-ft", "ts"), "cft": ("cft", None)})
        held = ordered.filter(pl.col("mbtsad") < pl.col("ts"), pl.col("ts") < pl.col("cft")).height
        lines += [
            f"{attack}: M_b ASR {mean_std(backdoored['asr'])} (seeds {seeds(backdoored['asr'])}; above 89 in "
            f"{(backdoored['asr'] > 89).sum()} of {backdoored.height}), CACC {backdoored['cacc'].mean():.2f}",
            f"{attack}: MBTSAD ASR {mean_std(mbtsad['asr'])}, CACC {mbtsad['cacc'].mean():.2f} "
            f"(minus M_b's: {mbtsad['cacc'].mean() - backdoored['cacc'].mean():+.2f})",
            f"{attack}: TS-FT ASR {mean_std(teacher['asr'])}, CFT ASR {mean_std(cft['asr'])}; "
            f"MBTSAD < TS-FT < CFT in {held} of {ordered.height} seeds",
        ]
    return lines


def sst2_paired(rows: pl.DataFrame) -> list[str]:
    """Claims (c) and (g), paired: MBTSAD minus Fine-Mixing, Fine-Purifying and TS-FT, seed by seed."""
    differences = paired_differences(rows)
    lines = ["## SST-2 paired: MBTSAD minus each baseline, per seed (ΔASR; ΔCACC)"]
    for (attack, baseline), group in differences.sort("seed").group_by("attack", "baseline", maintain_order=True):
        lines.append(
            f"{attack} {baseline}: ΔASR {seeds(group['d_asr'], sign=True)}; ΔCACC {seeds(group['d_cacc'], sign=True)}"
        )
    for baseline in ("fine-mixing", "fine-purifying", "ts-ft"):
        group = differences.filter(pl.col("baseline") == baseline)
        worse = group.filter(pl.col("d_asr") > 0)
        lines.append(
            f"{baseline}, all attacks: baseline's ASR lower in {worse.height} of {group.height} seeds "
            f"(ΔASR there {span(worse['d_asr'])}); ΔCACC over all {group.height} seeds {span(group['d_cacc'])}, "
            f"over those {worse.height} {span(worse['d_cacc'])}; mean ΔCACC "
            + ", ".join(
                f"{attack} {group.filter(pl.col('attack') == attack)['d_cacc'].mean():+.2f}" for attack in ATTACKS
            )
        )
    teacher = differences.filter(pl.col("baseline") == "ts-ft", pl.col("attack").is_in(["lwp", "ep"]))
    lines.append(
        f"MBTSAD below TS-FT on LWP and EP in {(teacher['d_asr'] < 0).sum()} of {teacher.height} seeds, "
        f"by {-teacher['d_asr'].max():.2f} to {-teacher['d_asr'].min():.2f} points"
    )
    purifying = cell(rows, "lwp", "fine-purifying")
    lines.append(f"Fine-Purifying's LWP ASR, seeds {', '.join(map(str, purifying['seed']))}: {seeds(purifying['asr'])}")
    return lines


def sst2_ablations(rows: pl.DataFrame) -> list[str]:
    """Claim (f): the full loss against each ablation, on the means and seed by seed."""
    lines = ["## SST-2 Table IV: the full loss against each ablation"]
    won_on_means, won_on_seed = 0, Counter[int]()
    for attack in ATTACKS:
        full = cell(rows, attack, "mbtsad", "ts")
        lines.append(f"{attack}: full {full['cacc'].mean():.2f} / {mean_std(full['asr'])}")
        for ablation in ABLATIONS:
            other = cell(rows, attack, ablation, "ts")
            paired = versus(full, other)
            won_on_means += full["asr"].mean() < other["asr"].mean()
            for seed, d_asr in paired.select("seed", "d_asr").iter_rows():
                won_on_seed[seed] += d_asr < 0
            lines.append(
                f"{attack} {ablation}: {other['cacc'].mean():.2f} / {mean_std(other['asr'])} "
                f"(ASR per seed {seeds(other['asr'])}); full lower in {(paired['d_asr'] < 0).sum()} of "
                f"{paired.height} seeds, full minus it: ΔASR {seeds(paired['d_asr'], sign=True)}, "
                f"ΔCACC {seeds(paired['d_cacc'], sign=True)} (mean {paired['d_cacc'].mean():+.2f})"
            )
    lines.append(f"cells the full loss wins on the means: {won_on_means} of {len(ATTACKS) * len(ABLATIONS)}")
    lines += [f"cells the full loss wins on seed {seed} alone: {won} of 9" for seed, won in sorted(won_on_seed.items())]
    return lines


def sst2_augmentations(rows: pl.DataFrame) -> list[str]:
    """Claim (e): retraining on each augmentation (Table III), TS's rank on the means and per seed."""
    lines = ["## SST-2 Table III: ASR after retraining on each augmentation"]
    for attack in ATTACKS:
        cells = {"ts": ("ts-ft", "ts")} | {augmentation: ("aug-ft", augmentation) for augmentation in AUGMENTATIONS}
        asr = asr_by_seed(rows, attack, cells)
        lowest = asr.filter(pl.col("ts") < pl.min_horizontal(AUGMENTATIONS)).height
        lines.append(f"{attack}: TS lowest in {lowest} of {asr.height} seeds")
        lines += [f"{attack}: {name} {mean_std(asr[name])} (seeds {seeds(asr[name])})" for name in cells]
    return lines


def sst2_other_rows(rows: pl.DataFrame) -> list[str]:
    """Tables I and II's other rows: the detectors, Reinitialization, Fine-Pruning, CFT."""
    lines = ["## SST-2 Tables I-II, the other rows (ASR)"]
    for defense in ("strip", "rap", "reinit", "fine-pruning", "cft"):
        for attack in ATTACKS:
            rows_here = cell(rows, attack, defense)
            lines.append(
                f"{attack} {defense}: {rows_here['cacc'].mean():.2f} / {mean_std(rows_here['asr'])} "
                f"(seeds {seeds(rows_here['asr'])})"
            )
    return lines


def imdb(rows: pl.DataFrame) -> list[str]:
    """The IMDb section (seed 0): MBTSAD against its flip, M_b and the baselines; the lowest ASR per attack."""
    lines = ["## IMDb, seed 0"]
    for attack in ATTACKS:
        by_asr = rows.filter(pl.col("attack") == attack, pl.col("defense") != "none").sort("asr")
        m_b = cell(rows, attack, "none").row(0, named=True)
        mbtsad = cell(rows, attack, "mbtsad", "ts").row(0, named=True)
        flip = mbtsad["clean_flip"]
        lines += [
            f"{attack}: M_b {m_b['cacc']:.2f} / {m_b['asr']:.2f} (flip {m_b['clean_flip']:.2f}); MBTSAD "
            f"{mbtsad['cacc']:.2f} / {mbtsad['asr']:.2f}, flip {flip:.2f} (ASR minus flip {mbtsad['asr'] - flip:+.2f}; "
            f"flip minus M_b's {flip - m_b['clean_flip']:+.2f}; CACC minus M_b's {mbtsad['cacc'] - m_b['cacc']:+.2f})",
            f"{attack}: the defences' three lowest ASRs: "
            + ", ".join(f"{r['defense']} {r['asr']:.2f}" for r in by_asr.head(3).iter_rows(named=True)),
        ]
        for baseline in ("fine-mixing", "fine-purifying", "ts-ft", "rap"):
            other = cell(rows, attack, baseline, "ts" if baseline == "ts-ft" else None).row(0, named=True)
            d_asr, d_cacc = mbtsad["asr"] - other["asr"], mbtsad["cacc"] - other["cacc"]
            detector = f"; FRR {other['frr']:.2f}, FAR {other['far']:.2f}" if baseline == "rap" else ""
            lines.append(
                f"{attack} {baseline}: {other['cacc']:.2f} / {other['asr']:.2f} (flip {other['clean_flip']:.2f}); "
                f"MBTSAD minus it: ΔASR {d_asr:+.2f}, ΔCACC {d_cacc:+.2f}{detector}"
            )
    return lines


def eq9(summary: pl.DataFrame, seed_zero: pl.DataFrame) -> list[str]:
    """Eq. 9 per seed as far as the committed files tell: seed 0's rows, and seeds 1-2 as an unordered pair.

    The three-seed mean m and sample standard deviation s with seed 0's x0 fix the other two seeds' sum and sum of
    squares, hence the pair {x1, x2} = S/2 ± sqrt(Q/2 - S²/4), S = 3m - x0, Q = 2s² + 3m² - x0²; which is seed 1
    and which seed 2 is not in any committed file (runs/cpu/select_aug/ was not committed).
    """
    lines = ["## SST-2 eq. 9: seed 0 (fidelity/s0-def/select_aug) and seeds 1-2 (unordered, from mean, std, seed 0)"]
    joined = summary.join(seed_zero, on=["dataset", "attack", "augmentation"]).sort("attack", "augmentation")
    for row in joined.iter_rows(named=True):
        m, s, x0 = row["mean_ce_mean"], row["mean_ce_std"], row["mean_ce"]
        total, squares = 3 * m - x0, 2 * s**2 + 3 * m**2 - x0**2
        spread = squares / 2 - total**2 / 4
        pair = (
            "inconsistent (seed 0 here is not the summary's)"
            if spread < -1e-12
            else f"{total / 2 - math.sqrt(max(spread, 0)):.4f}, {total / 2 + math.sqrt(max(spread, 0)):.4f}"
        )
        lines.append(
            f"{row['attack']} {row['augmentation']}: mean {m:.4f} ± {s:.4f}; seed 0 {x0:.4f}; seeds 1-2 {{{pair}}}"
        )
    return lines


def main() -> None:
    sst2, imdb_rows = read_trials(HERE / "trials-sst2"), read_trials(HERE / "trials-imdb")
    summary = pl.read_csv(HERE / "summary-eq9.csv").filter(pl.col("dataset") == "sst2")
    seed_zero = pl.read_parquet(sorted((HERE.parent / "fidelity/s0-def/select_aug").glob("*.parquet"))).filter(
        pl.col("seed") == 0
    )
    sections = (
        sst2_main(sst2),
        sst2_paired(sst2),
        sst2_ablations(sst2),
        sst2_augmentations(sst2),
        sst2_other_rows(sst2),
        imdb(imdb_rows),
        eq9(summary, seed_zero.select("dataset", "attack", "augmentation", "mean_ce")),
    )
    print("\n\n".join("\n".join(lines) for lines in sections))


if __name__ == "__main__":
    main()
