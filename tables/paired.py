"""The paired comparison: MBTSAD against a baseline on the same backdoored model, seed by seed.

Two defences of one (dataset, attack, seed) start from the same M_b, D_c and D_a, so their difference is free
of the seed-to-seed spread of the backdoor itself. Per (dataset, attack, baseline) this gives the seeds that
hold both rows, the mean ASR and CACC difference (MBTSAD minus the baseline, in points) with its sample
standard deviation and range, and in how many seeds MBTSAD's ASR is the lower one. Claims (c) and (g) of
the paper are judged on these differences, not on overlapping means.
"""

from __future__ import annotations

import polars as pl

from tables.layout import ATTACKS, DATASETS

# (defense, augmentation): the paper's baselines, then NAD and MBTSAD with the CFT teacher (what token splitting adds)
BASELINES = (
    ("fine-mixing", None),
    ("fine-purifying", None),
    ("ts-ft", "ts"),
    ("nad", None),
    ("mbtsad-cft-teacher", "ts"),
)
PAIR = ("dataset", "attack", "seed")


def paired_differences(trials: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, attack, seed, baseline) holding MBTSAD and that baseline: `d_asr`, `d_cacc`."""
    mbtsad = trials.filter(pl.col("defense") == "mbtsad", pl.col("augmentation") == "ts").select(
        *PAIR, pl.col("asr").alias("mbtsad_asr"), pl.col("cacc").alias("mbtsad_cacc")
    )
    frames = []
    for defense, augmentation in BASELINES:
        base = trials.filter(pl.col("defense") == defense, pl.col("augmentation").eq_missing(augmentation))
        frames.append(
            mbtsad.join(base.select(*PAIR, "asr", "cacc"), on=list(PAIR)).select(
                *PAIR,
                pl.lit(defense).alias("baseline"),
                (pl.col("mbtsad_asr") - pl.col("asr")).alias("d_asr"),
                (pl.col("mbtsad_cacc") - pl.col("cacc")).alias("d_cacc"),
            )
        )
    return pl.concat(frames).sort([*PAIR, "baseline"])


def paired_summary(differences: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, attack, baseline): seeds, mean/std/min/max of d_asr, mean/std of d_cacc, seeds MBTSAD wins,
    and each seed's d_asr (`d_asr_seeds`, e.g. `0: -10.00; 1: +5.00`)."""
    order = {defense: i for i, (defense, _) in enumerate(BASELINES)}
    return (
        differences.group_by("dataset", "attack", "baseline")
        .agg(
            pl.len().alias("seeds"),
            pl.col("d_asr").mean().alias("d_asr_mean"),
            pl.col("d_asr").std().alias("d_asr_std"),
            pl.col("d_asr").min().alias("d_asr_min"),
            pl.col("d_asr").max().alias("d_asr_max"),
            pl.col("d_cacc").mean().alias("d_cacc_mean"),
            pl.col("d_cacc").std().alias("d_cacc_std"),
            (pl.col("d_asr") < 0).sum().alias("mbtsad_lower_asr"),
            pl.format("{}: {}", "seed", pl.col("d_asr").map_elements(lambda d: f"{d:+.2f}", return_dtype=pl.String))
            .sort_by("seed")
            .str.join("; ")
            .alias("d_asr_seeds"),
        )
        .sort("dataset", "attack", pl.col("baseline").replace_strict(order, default=len(order)))
    )


def paired_markdown(summary: pl.DataFrame) -> str:
    """The paired summary as a Markdown table; a note when no seed holds MBTSAD beside a baseline."""
    lines = [
        "### Paired comparison: MBTSAD minus each baseline on the same backdoored model (points)",
        "",
        "| dataset | attack | baseline | seeds | ΔASR mean ± std | ΔASR range | ΔCACC mean ± std "
        "| MBTSAD's ASR lower | ΔASR per seed |",
        "|---|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in summary.iter_rows(named=True):
        lines.append(
            f"| {DATASETS.get(r['dataset'], r['dataset'])} | {ATTACKS.get(r['attack'], r['attack'])} | {r['baseline']} "
            f"| {r['seeds']} | {_signed(r['d_asr_mean'], r['d_asr_std'])} "
            f"| {r['d_asr_min']:+.2f} to {r['d_asr_max']:+.2f} | {_signed(r['d_cacc_mean'], r['d_cacc_std'])} "
            f"| {r['mbtsad_lower_asr']} of {r['seeds']} | {r['d_asr_seeds']} |"
        )
    if summary.is_empty():
        lines.append("| — | — | — | 0 | — | — | — | — | — |")
    lines += ["", "- Negative ΔASR: MBTSAD leaves less of the backdoor; negative ΔCACC: it costs clean accuracy."]
    return "\n".join(lines) + "\n"


def _signed(mean: float, std: float | None) -> str:
    return f"{mean:+.2f}" if std is None else f"{mean:+.2f} ± {std:.2f}"
