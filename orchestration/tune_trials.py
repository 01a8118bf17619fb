"""Every trial of a tune run folder as one row, read back from its Ray Tune experiment folders.

Each `tune` call leaves one experiment folder (`optuna-<study>-<time>/`) holding a folder per trial with
Ray Tune's `params.json` (the proposed settings and the cell) and `result.json` (the reported dev scores), so
a study continued over several calls, or over several machines whose run folders were copied together, is
listed in full. `tune` writes the rows to `RUN_DIR/tune_trials.parquet` (docs/results-schema.md).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from orchestration.store import write_atomic
from orchestration.tuning import SEARCH_SPACE, study_name, tuning_label

TRIALS_FILE = "tune_trials.parquet"
TUNE_TRIAL_SCHEMA: dict[str, Any] = {
    "study": pl.String,
    "dataset": pl.String,
    "attack": pl.String,
    "seed": pl.Int64,
    "tuned_by": pl.String,  # the objective and the attacks it ran on: oracle, proxy, proxy from lwp+ep (tuning_label)
    "experiment": pl.String,  # the experiment folder: one per tune call
    "trial": pl.String,  # Ray Tune's trial id within it
    "status": pl.String,  # ok, failed (error.txt) or unfinished (no result yet)
    "alpha": pl.Float64,
    "beta": pl.Float64,
    "distil_lr": pl.Float64,
    "distil_epochs": pl.Int64,
    "attention_axis": pl.String,
    "penalty": pl.Float64,
    "objective": pl.Float64,
    "dev_asr": pl.Float64,
    "dev_cacc": pl.Float64,
    "reference_cacc": pl.Float64,  # the defended model's clean dev accuracy (M_b's, or the proxy model's)
    "reference_asr": pl.Float64,  # its dev ASR for the objective's trigger: did the backdoor take
}
# Columns added after tune_trials files existed, with what an older file's rows get (it had the oracle only).
ADDED_COLUMNS: dict[str, Any] = {"tuned_by": "oracle", "reference_asr": None}
TRIAL_FOLDER = re.compile(r"^tune_cell_([0-9a-f]+_(\d+))_")  # Ray Tune's trial id, and its running number


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a Ray Tune params file ({error})") from None


def _last_result(path: Path) -> dict[str, Any] | None:
    """The last report in a Ray Tune result.json (JSON lines), or None when the trial reported nothing."""
    if not path.is_file():
        return None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: its last line is not a JSON report ({error})") from None


def trial_row(experiment: str, folder: Path) -> dict[str, Any]:
    """One trial folder as a row of TUNE_TRIAL_SCHEMA."""
    params = _json(folder / "params.json")
    cell = params.get("cell")
    if not isinstance(cell, dict) or not {"dataset", "attack", "seed"} <= set(cell):
        raise ValueError(f"{folder / 'params.json'}: no tune cell (dataset, attack, seed) in it")
    result = _last_result(folder / "result.json")
    reported = result is not None and "objective" in result
    status = "ok" if reported else "failed" if (folder / "error.txt").is_file() else "unfinished"
    match = TRIAL_FOLDER.match(folder.name)
    scores = result if reported else {}
    kind = params.get("objective_kind", "oracle")  # absent in trials run before the proxy objective existed
    tuned_on = params.get("tuned_on") or [cell["attack"]]
    seeds = tuple(params.get("spec", {}).get("seeds", (0,)))
    return {
        "study": study_name(cell["dataset"], cell["attack"], seeds, kind, tuned_on),
        "dataset": cell["dataset"],
        "attack": cell["attack"],
        "seed": int(cell["seed"]),
        "tuned_by": tuning_label(kind, cell["attack"], tuned_on),
        "experiment": experiment,
        "trial": match.group(1) if match else folder.name,
        "status": status,
        **{name: params.get(name) for name in SEARCH_SPACE},
        "penalty": params.get("penalty"),
        "objective": scores.get("objective"),
        "dev_asr": scores.get("asr"),
        "dev_cacc": scores.get("cacc"),
        "reference_cacc": scores.get("reference_cacc"),
        "reference_asr": scores.get("reference_asr"),
    }


def _trial_number(folder: Path) -> tuple[int, str]:
    """Ray Tune's running number of a trial folder (`tune_cell_<hash>_<n>_...`), for ordering."""
    match = TRIAL_FOLDER.match(folder.name)
    return (int(match.group(2)) if match else 0, folder.name)


def read_tune_trials(run_dir: Path) -> pl.DataFrame:
    """Every trial under `run_dir`'s experiment folders, by experiment folder (study, then time), then trial number."""
    rows = [
        trial_row(experiment.name, folder)
        for experiment in sorted(p for p in run_dir.glob("optuna-*") if p.is_dir())
        for folder in sorted((p for p in experiment.iterdir() if (p / "params.json").is_file()), key=_trial_number)
    ]
    return pl.DataFrame(rows, schema=TUNE_TRIAL_SCHEMA)


def write_tune_trials(run_dir: Path) -> Path:
    """Write `run_dir`'s trials to TRIALS_FILE atomically and return its path. Rows already in the file whose
    experiment folder is gone (a run folder carried elsewhere as optuna.db and this file only) are kept; a file
    written before ADDED_COLUMNS existed gets their defaults."""
    path = run_dir / TRIALS_FILE
    trials = read_tune_trials(run_dir)
    if path.is_file():
        try:
            earlier = pl.read_parquet(path)
        except (OSError, pl.exceptions.ComputeError) as error:
            raise ValueError(f"{path}: not a tune trials file ({error}); move it away to rebuild it") from None
        earlier = earlier.with_columns(
            pl.lit(value, TUNE_TRIAL_SCHEMA[name]).alias(name)
            for name, value in ADDED_COLUMNS.items()
            if name not in earlier.columns
        )
        if set(earlier.columns) != set(TUNE_TRIAL_SCHEMA) or any(
            earlier.schema[name] != dtype for name, dtype in TUNE_TRIAL_SCHEMA.items()
        ):
            raise ValueError(f"{path}: its columns are not a tune trials file's (docs/results-schema.md)")
        earlier = earlier.select(list(TUNE_TRIAL_SCHEMA))
        gone = earlier.join(trials.select("experiment").unique(), on="experiment", how="anti")
        trials = pl.concat([gone, trials]).sort("experiment", maintain_order=True)
    buffer = io.BytesIO()
    trials.write_parquet(buffer)
    write_atomic(path, buffer.getvalue())
    return path
