"""Mean, standard deviation and seed count of each metric per table cell."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

TRIAL_CELL = ("dataset", "attack", "defense", "augmentation")
TRIAL_METRICS = ("cacc", "asr")
CE_CELL = ("dataset", "attack", "augmentation")
CE_METRICS = ("mean_ce",)


@dataclass(frozen=True)
class Stat:
    """One metric of one cell over its seeds."""

    mean: float
    std: float | None  # sample standard deviation (n - 1); None with one seed
    n: int  # seeds


def summarize(rows: pl.DataFrame, cell: Sequence[str], metrics: Sequence[str]) -> pl.DataFrame:
    """One row per cell: seed count `n`, and `<metric>_mean`, `<metric>_std` for each metric."""
    return (
        rows.group_by(cell)
        .agg(
            pl.len().alias("n"),
            *(pl.col(metric).mean().alias(f"{metric}_mean") for metric in metrics),
            *(pl.col(metric).std().alias(f"{metric}_std") for metric in metrics),
        )
        .sort(cell)
    )


def stats(summary: pl.DataFrame, cell: Sequence[str], metric: str) -> dict[tuple[str | None, ...], Stat]:
    """A summary's metric as a lookup from cell key to Stat."""
    return {
        tuple(row[name] for name in cell): Stat(row[f"{metric}_mean"], row[f"{metric}_std"], row["n"])
        for row in summary.iter_rows(named=True)
    }
