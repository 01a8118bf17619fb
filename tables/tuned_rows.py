"""MBTSAD's rows by how its settings were chosen, beside the baselines on the same backdoored models: claims (b) and
(g) for each choice (the attacker's trigger as oracle, the defender's proxy backdoor, one attack left out).

`python -m tables.tuned_rows --grid docs/results/cpu/trials-sst2 --rows "oracle=docs/results/cpu/trials-sst2" --rows
"proxy=docs/results/tuning/proxy/trials" --out docs/results/tuning/compare.md`: the grid's folders give M_b's rows
(`none`), TS-FT, Fine-Mixing and Fine-Purifying; each `--rows` gives one choice's MBTSAD rows and, where it ran them,
its own `none` rows, which must equal the grid's (same CACC, ASR and flip), or the pairing would not be on one M_b.
Reads result files only.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from tables.build import write_atomic
from tables.layout import ATTACKS
from tables.model_size import labelled_rows, read_rows
from tables.paired import paired_differences

CLAIM_B_ASR = 20.0  # claim (b): MBTSAD leaves less than 20% ASR
COMPARED = ("ts-ft", "fine-mixing", "fine-purifying")
SCORES = ("cacc", "asr", "clean_flip")


def other_backdoored_models(grid: pl.DataFrame, rows: pl.DataFrame) -> list[str]:
    """The (attack, seed) whose `none` row in `rows` differs from the grid's: not the same M_b."""
    key = ["attack", "seed"]
    both = rows.filter(pl.col("defense") == "none").join(
        grid.filter(pl.col("defense") == "none"), on=key, suffix="_grid"
    )
    differ = both.filter(pl.any_horizontal(pl.col(c) != pl.col(f"{c}_grid") for c in SCORES))
    return [f"{r['attack']} seed {r['seed']}" for r in differ.sort(key).iter_rows(named=True)]


def choice_summary(grid: pl.DataFrame, choices: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Per (attack, choice): seeds, MBTSAD's mean and std ASR, its CACC change against M_b, the seeds below claim
    (b)'s 20%, and per compared row the mean paired ΔASR (MBTSAD minus it) and the seeds where MBTSAD is lower."""
    reference = grid.filter(pl.col("defense") == "none").select("attack", "seed", pl.col("cacc").alias("mb_cacc"))
    baselines = grid.filter(pl.col("defense") != "mbtsad")
    frames = []
    for label, rows in choices.items():
        mbtsad = rows.filter(pl.col("defense") == "mbtsad")
        own = (
            mbtsad.join(reference, on=["attack", "seed"])
            .group_by("attack")
            .agg(
                pl.len().alias("seeds"),
                pl.col("asr").mean().alias("asr"),
                pl.col("asr").std().alias("asr_std"),
                pl.col("clean_flip").mean().alias("clean_flip"),
                (pl.col("cacc") - pl.col("mb_cacc")).mean().alias("d_cacc"),
                (pl.col("asr") < CLAIM_B_ASR).sum().alias("below_20"),
            )
        )
        paired = paired_differences(pl.concat([baselines, mbtsad], how="vertical_relaxed"))
        compared = (
            paired.filter(pl.col("baseline").is_in(COMPARED))
            .group_by("attack")
            .agg(
                *(pl.col("d_asr").filter(pl.col("baseline") == b).mean().alias(f"d_{b}") for b in COMPARED),
                *((pl.col("d_asr") < 0).filter(pl.col("baseline") == b).sum().alias(f"lower_{b}") for b in COMPARED),
                *(pl.col("d_asr").filter(pl.col("baseline") == b).len().alias(f"pairs_{b}") for b in COMPARED),
            )
        )
        frames.append(own.join(compared, on="attack", how="left").with_columns(pl.lit(label).alias("choice")))
    order = {attack: i for i, attack in enumerate(ATTACKS)}
    labels = {label: i for i, label in enumerate(choices)}
    return pl.concat(frames, how="diagonal_relaxed").sort(
        pl.col("attack").replace_strict(order, default=len(order)), pl.col("choice").replace_strict(labels)
    )


def _paired(row: Mapping, baseline: str) -> str:
    pairs = row.get(f"pairs_{baseline}") or 0
    if not pairs:
        return "—"
    return f"{row[f'd_{baseline}']:+.2f} ({row[f'lower_{baseline}']} of {pairs})"


def tuned_rows_markdown(summary: pl.DataFrame) -> str:
    """The choice summary as a Markdown table."""
    lines = [
        "| attack | MBTSAD tuned by | seeds | ASR mean ± std | clean flip | ΔCACC vs M_b | ASR < 20 (claim b) "
        "| − TS-FT ΔASR (lower) | − Fine-Mixing ΔASR (lower) | − Fine-Purifying ΔASR (lower) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in summary.iter_rows(named=True):
        spread = "" if r["asr_std"] is None else f" ± {r['asr_std']:.2f}"
        lines.append(
            f"| {r['attack']} | {r['choice']} | {r['seeds']} | {r['asr']:.2f}{spread} | {r['clean_flip']:.2f} "
            f"| {r['d_cacc']:+.2f} "
            f"| {r['below_20']} of {r['seeds']} | " + " | ".join(_paired(r, b) for b in COMPARED) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, help="FOLDER[,FOLDER] of the baselines' and M_b's trial rows")
    parser.add_argument("--rows", action="append", required=True, help="LABEL=FOLDER[,FOLDER] of MBTSAD rows (repeat)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    grid = read_rows(*(Path(f) for f in args.grid.split(",")))
    choices = labelled_rows(parser, args.rows)
    for label, rows in choices.items():
        if mismatched := other_backdoored_models(grid, rows):
            parser.error(f"{label}: M_b differs from the grid's for {', '.join(mismatched)}; the pairs would not hold")
    write_atomic(args.out, tuned_rows_markdown(choice_summary(grid, choices)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
