"""Tuning MBTSAD without Ray: the search ranges as data, the dev-only objectives, the best-values file.

The search covers eq. 1's alpha and beta and the levers of the fidelity study (issue 15): the
distillation's learning rate (from the retraining rate to the paper's 25 times it), its epochs and eq. 4's
attention axis. `tune --param` narrows it; the rest keep the spec's values.

The objective, minimised: ASR on the poisoned dev set plus `penalty` times the clean dev accuracy the
defence lost against the model it defended (both in percent), so with penalty 1 each CACC point lost costs one
ASR point. Two objectives say which backdoor that is (OBJECTIVES):
- `oracle`: MBTSAD on M_b, its ASR on the dev set poisoned with the attacker's own trigger. A defender never
  knows that trigger, so settings tuned this way give an oracle figure.
- `proxy`: the defender plants a backdoor of its own into a copy of M_b (core.poison.ProxyBackdoor: BadNets with
  words no attack uses, on D_c, at CFT's training settings); MBTSAD runs on that proxy model and its ASR is
  measured with the defender's trigger on dev. The attacker's trigger and the test data are never read; the
  settings are then applied to M_b as it came.
With several seeds in the spec each trial runs on every seed's M_b, D_c and dev set, and the objective is taken
of the seed means, so a setting is chosen for how it does across backdoored models, not on one. Left one attack
out (`leave_one_out`), a trial runs on every other attack's M_b instead of the attack's own, pooled the same way,
and the best setting is written under the left-out attack's key: a setting tuned on the other attacks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.losses import ATTENTION_AXES
from orchestration.spec import SweepSpec, read_best_params
from orchestration.store import write_atomic

DEFAULT_PENALTY = 1.0  # ASR points per clean dev accuracy point lost
TUNED_DEFENSE = "mbtsad"  # the row whose eq. 1 weights are searched; the ablations reuse them
STUDY_FILE = "optuna.db"  # the persistent Optuna study (sqlite) in the tuning run folder
OBJECTIVES = ("oracle", "proxy")  # whose backdoor the dev ASR is measured on: the attacker's, or the defender's own


@dataclass(frozen=True)
class Range:
    """A numeric search range of one setting."""

    low: float
    high: float
    log: bool  # sample uniformly in log space (a scale), else uniformly
    integer: bool = False  # whole numbers from low to high, both included
    per_retrain_lr: bool = False  # low and high are multiples of the cell's retraining rate

    def bounds(self, retrain_lr: float) -> tuple[float, float]:
        """The range's ends for a cell whose retraining (TS-FT) rate is `retrain_lr`."""
        scale = retrain_lr if self.per_retrain_lr else 1.0
        return self.low * scale, self.high * scale


@dataclass(frozen=True)
class Choice:
    """A categorical setting: one of `options`."""

    options: tuple[str, ...]


# alpha scales L_cls around the paper's 1 (a tenth to ten times); beta weighs L_h, which SPEC's prototype
# found best switched off (beta 0), so its range starts at 0 and stays linear. The distillation rate runs
# from the retraining rate up to the paper's ratio (5e-4 / 2e-5 = 25 times it), which the fidelity study
# found too high for MiniLM at its own rate.
SEARCH_SPACE: dict[str, Range | Choice] = {
    "alpha": Range(0.1, 10.0, log=True),
    "beta": Range(0.0, 5.0, log=False),
    "distil_lr": Range(1.0, 25.0, log=True, per_retrain_lr=True),
    "distil_epochs": Range(1, 4, log=False, integer=True),
    "attention_axis": Choice(ATTENTION_AXES),
}


def searched(params: tuple[str, ...] | None) -> tuple[str, ...]:
    """The settings a tune run searches: `params` (checked against SEARCH_SPACE), or all of them."""
    if unknown := sorted(set(params or ()) - set(SEARCH_SPACE)):
        raise ValueError(f"unknown tuning parameters {unknown}; valid: {', '.join(SEARCH_SPACE)}")
    return tuple(params) if params else tuple(SEARCH_SPACE)


def objective(*, asr: float, cacc: float, reference_cacc: float, penalty: float = DEFAULT_PENALTY) -> float:
    """Dev ASR plus `penalty` times the dev CACC lost against M_b (a gain is not rewarded)."""
    return asr + penalty * max(0.0, reference_cacc - cacc)


def seed_mean(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per key, the mean over a trial's runs (each seed's, and each other attack's when one is left out) of its dev
    scores (`asr`, `cacc`, `reference_cacc`, `reference_asr`); the trial's objective is `objective` of these means."""
    if not scores:
        raise ValueError("no seed to average over")
    return {key: sum(score[key] for score in scores) / len(scores) for key in scores[0]}


def leave_one_out(attacks: Sequence[str], left_out: str) -> tuple[str, ...]:
    """The attacks a setting for `left_out` is tuned on when that attack is left out: all the others, in order."""
    others = tuple(attack for attack in attacks if attack != left_out)
    if left_out not in attacks or not others:
        raise ValueError(f"leaving {left_out!r} out of the attacks {list(attacks)} leaves none to tune on")
    return others


def tuning_label(objective_kind: str, attack: str, tuned_on: Sequence[str]) -> str:
    """How an attack's setting was chosen, as best_params.json and the result rows record it (`tuned_by`):
    `oracle` or `proxy` when tuned on the attack's own M_b, `proxy from lwp+ep` when tuned on other attacks'."""
    if objective_kind not in OBJECTIVES:
        raise ValueError(f"unknown tuning objective {objective_kind!r}; valid: {', '.join(OBJECTIVES)}")
    return objective_kind if tuple(tuned_on) == (attack,) else f"{objective_kind} from {'+'.join(tuned_on)}"


def study_name(
    dataset: str,
    attack: str,
    seeds: tuple[int, ...] = (0,),
    objective_kind: str = "oracle",
    tuned_on: Sequence[str] | None = None,
) -> str:
    """The Optuna study of one (dataset, attack): `sst2-badnets` on one seed with the oracle objective; each other
    objective is a study of its own: `-from-lwp-ep` when tuned on other attacks' M_b, `-seeds-0-1-2` when each trial
    is scored on several seeds' M_b, `-proxy` with the proxy objective (`sst2-badnets-seeds-0-1-2-proxy`)."""
    name = f"{dataset}-{attack}"
    if tuned_on is not None and tuple(tuned_on) != (attack,):
        name += "-from-" + "-".join(tuned_on)
    name += "" if len(seeds) == 1 else "-seeds-" + "-".join(str(seed) for seed in seeds)
    name += "" if objective_kind == "oracle" else f"-{objective_kind}"
    return name.replace("/", "_")


def best_params_path(spec: SweepSpec, run_dir: Path) -> Path:
    """Where `sweep` reads alpha and beta: the spec's `best_params`, else `<run_dir>/../best_params.json`."""
    return Path(spec.best_params) if spec.best_params else run_dir.parent / "best_params.json"


def merge_best_params(path: Path, updates: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add or replace `<dataset>/<attack>` entries (the tuned values and `tuned_by`, how they were chosen) in the
    best-values file, keeping the others; written atomically."""
    merged = {**read_best_params(path), **{key: dict(values) for key, values in updates.items()}}
    write_atomic(path, json.dumps(merged, indent=2, sort_keys=True).encode())
    return merged
