"""Result rows: one Parquet file per trial under `<run dir>/trials/`, as docs/results-schema.md defines them."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from orchestration.spec import Cell
from orchestration.store import write_atomic

# docs/results-schema.md, `trials/<trial_id>.parquet`, in its order.
TRIAL_SCHEMA: dict[str, type[pl.DataType]] = {
    "trial_id": pl.String,
    "dataset": pl.String,
    "attack": pl.String,
    "defense": pl.String,
    "augmentation": pl.String,
    "seed": pl.Int64,
    "status": pl.String,
    "error": pl.String,
    "cacc": pl.Float64,
    "asr": pl.Float64,
    "clean_flip": pl.Float64,
    "frr": pl.Float64,
    "far": pl.Float64,
    "alpha": pl.Float64,
    "beta": pl.Float64,
    "distil_lr": pl.Float64,
    "distil_epochs": pl.Int64,
    "attention_axis": pl.String,
    "tuned_by": pl.String,
    "model": pl.String,
    "wall_s": pl.Float64,
    "peak_rss_mb": pl.Float64,
    "code": pl.String,
}
SCORES = ("cacc", "asr", "clean_flip", "frr", "far")  # percents, as core.evaluate.Evaluation.percents() names them


def trial_row(
    *,
    trial_id: str,
    cell: Cell,
    model: str,
    wall_s: float,
    peak_rss_mb: float | None = None,
    scores: Mapping[str, float | None] | None = None,
    error: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """A schema row: `ok` with the scores, or `failed` with the error and no scores; `peak_rss_mb` is the trial
    process's peak resident memory (unknown for a failed trial, whose process may be gone)."""
    if (scores is None) == (error is None):
        raise ValueError("a trial row has either scores (ok) or an error (failed)")
    return {
        "trial_id": trial_id,
        "dataset": cell.dataset,
        "attack": cell.attack,
        "defense": cell.defense,
        "augmentation": cell.augmentation,
        "seed": cell.seed,
        "status": "ok" if error is None else "failed",
        "error": error,
        **{name: None if scores is None else scores.get(name) for name in SCORES},
        "alpha": cell.alpha,
        "beta": cell.beta,
        "distil_lr": cell.distil_lr,
        "distil_epochs": cell.distil_epochs,
        "attention_axis": cell.attention_axis,
        "tuned_by": cell.tuned_by,
        "model": model,
        "wall_s": round(wall_s, 2),
        "peak_rss_mb": None if peak_rss_mb is None else round(peak_rss_mb, 1),
        "code": code,
    }


def row_path(run_dir: Path, trial_id: str) -> Path:
    """Where a trial's row lives in a run folder."""
    return run_dir / "trials" / f"{trial_id}.parquet"


def write_row(run_dir: Path, row: Mapping[str, Any]) -> Path:
    """Write one trial's row atomically, so the folder is readable while the sweep runs."""
    frame = pl.DataFrame([{name: row.get(name) for name in TRIAL_SCHEMA}], schema=TRIAL_SCHEMA)
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    path = row_path(run_dir, str(row["trial_id"]))
    write_atomic(path, buffer.getvalue())
    return path


def read_rows(run_dir: Path) -> pl.DataFrame:
    """Every trial row written so far (an empty frame with the schema when there is none); a column that rows
    written before it existed lack is null in them."""
    files = sorted((run_dir / "trials").glob("*.parquet"))
    if not files:
        return pl.DataFrame(schema=TRIAL_SCHEMA)
    frames = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    return frames.select(
        pl.col(name) if name in frames.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in TRIAL_SCHEMA.items()
    )
