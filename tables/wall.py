"""Where a run's time went: trial wall time per dataset and row of the tables, from the rows' `wall_s`.

A row's wall time is that of the trial that computed it (a row read back from the store keeps it), and the
trial that first needed a shared artifact carries its cost: the `none` row builds M_b, TS-FT the teacher that
MBTSAD then reads, the first Table III row of an augmentation its D_a.
"""

from __future__ import annotations

import polars as pl

from tables.layout import AUGMENTATIONS, DATASETS


def wall_time_summary(trials: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, defense, augmentation): trials, their summed and median wall time in minutes, longest first."""
    return (
        trials.drop_nulls("wall_s")
        .group_by("dataset", "defense", "augmentation")
        .agg(
            pl.len().alias("trials"),
            (pl.col("wall_s").sum() / 60).alias("minutes"),
            (pl.col("wall_s").median() / 60).alias("median_minutes"),
        )
        .sort(["dataset", "minutes"], descending=[False, True])
    )


def wall_time_markdown(summary: pl.DataFrame) -> str:
    """The wall-time summary as a Markdown table, with each dataset's total."""
    lines = [
        "### Trial wall time per row (minutes)",
        "",
        "| dataset | row | trials | minutes | minutes per trial (median) |",
        "|---|---|--:|--:|--:|",
    ]
    for r in summary.iter_rows(named=True):
        row = (
            r["defense"]
            if r["augmentation"] is None
            else f"{r['defense']} ({AUGMENTATIONS.get(r['augmentation'], r['augmentation'])})"
        )
        lines.append(
            f"| {DATASETS.get(r['dataset'], r['dataset'])} | {row} | {r['trials']} | {r['minutes']:.1f} "
            f"| {r['median_minutes']:.1f} |"
        )
    for dataset, trials, minutes in (
        summary.group_by("dataset").agg(pl.col("trials").sum(), pl.col("minutes").sum()).sort("dataset").iter_rows()
    ):
        lines.append(f"| {DATASETS.get(dataset, dataset)} | all | {trials} | {minutes:.1f} | |")
    lines += [
        "",
        "- Each trial's own wall time, summed: trials that ran side by side overlap in elapsed time. The trial",
        "  that first needed a shared artifact carries its cost: `none` builds M_b, TS-FT the teacher MBTSAD reads.",
    ]
    return "\n".join(lines) + "\n"
