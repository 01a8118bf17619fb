"""Tuning alpha and beta without Ray: the search ranges as data, the dev-only objective, the best-values file.

The objective, minimised: ASR on the poisoned dev set plus `penalty` times the clean dev accuracy the
defence lost against M_b (both in percent), so with penalty 1 each CACC point lost costs one ASR point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestration.spec import SweepSpec, read_best_params
from orchestration.store import write_atomic

DEFAULT_PENALTY = 1.0  # ASR points per clean dev accuracy point lost
TUNED_DEFENSE = "mbtsad"  # the row whose eq. 1 weights are searched; the ablations reuse them
STUDY_FILE = "optuna.db"  # the persistent Optuna study (sqlite) in the tuning run folder


@dataclass(frozen=True)
class Range:
    """A search range of one weight."""

    low: float
    high: float
    log: bool  # sample uniformly in log space (a scale), else uniformly


# alpha scales L_cls around the paper's 1 (a tenth to ten times); beta weighs L_h, which SPEC's prototype
# found best switched off (beta 0), so its range starts at 0 and stays linear.
SEARCH_SPACE: dict[str, Range] = {"alpha": Range(0.1, 10.0, log=True), "beta": Range(0.0, 5.0, log=False)}


def objective(*, asr: float, cacc: float, reference_cacc: float, penalty: float = DEFAULT_PENALTY) -> float:
    """Dev ASR plus `penalty` times the dev CACC lost against M_b (a gain is not rewarded)."""
    return asr + penalty * max(0.0, reference_cacc - cacc)


def study_name(dataset: str, attack: str) -> str:
    """The Optuna study of one (dataset, attack)."""
    return f"{dataset}-{attack}".replace("/", "_")


def best_params_path(spec: SweepSpec, run_dir: Path) -> Path:
    """Where `sweep` reads alpha and beta: the spec's `best_params`, else `<run_dir>/../best_params.json`."""
    return Path(spec.best_params) if spec.best_params else run_dir.parent / "best_params.json"


def merge_best_params(path: Path, updates: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Add or replace `<dataset>/<attack>` entries in the best-values file, keeping the others; written atomically."""
    merged = {**read_best_params(path), **{key: dict(values) for key, values in updates.items()}}
    write_atomic(path, json.dumps(merged, indent=2, sort_keys=True).encode())
    return merged
