"""The Ray side of `select-aug`, `study` and `tune`: eq. 9's augmentations and the fidelity study's cells as
parallel Ray tasks, and alpha/beta searched by OptunaSearch inside Ray Tune on dev data only.

select-aug runs one Ray task per (dataset, attack, seed, augmentation) with a trial's resources (plain
tasks: each scores once and returns a record, so Tune's bookkeeping buys nothing); the driver writes
the rows, the pictures and the summary. tune runs one Tuner per (dataset, attack) whose OptunaSearch
keeps its study in an sqlite file of the run folder, so a second run adds trials to the same study.
Ray imports live here and in orchestration/sweep.py only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from orchestration.hub import open_suspect, pinned_name
from orchestration.select_aug import (
    AUGMENTATION_SET,
    PICTURE_POINTS,
    SUSPECT,
    AugmentationScore,
    score_augmentation,
    selections,
    write_score,
    write_summary,
)
from orchestration.spec import Cell, SweepSpec, defense_setup, spec_from_dict, spec_to_dict
from orchestration.study import StudyCell, run_study_cell, write_study_rows
from orchestration.sweep import (
    cluster_lock,
    ray_session,
    resolve_locations,
    trial_inputs,
    trial_resources,
    trial_tracker,
)
from orchestration.trial import run_trial
from orchestration.tune_trials import write_tune_trials
from orchestration.tuning import (
    DEFAULT_PENALTY,
    SEARCH_SPACE,
    STUDY_FILE,
    TUNED_DEFENSE,
    Choice,
    best_params_path,
    merge_best_params,
    objective,
    searched,
    seed_mean,
    study_name,
)
from orchestration.uri_store import Store, open_store


def _worker(spec: SweepSpec) -> tuple[Store, torch.device]:
    """A task's or trial's store and device, with quiet transformers and the trial's CPU share."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_trial)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return open_store(str(spec.store), lock=cluster_lock), device


# ------------------------------------------------------------------------------------- select-aug


@ray.remote
def _score_task(spec_dict: dict[str, Any], cell: dict[str, Any], points: int) -> AugmentationScore:
    """One augmentation's eq. 9 score and picture, on a worker."""
    spec = spec_from_dict(spec_dict)
    store, device = _worker(spec)
    return score_augmentation(spec, **cell, store=store, device=device, points=points)


@dataclass(frozen=True)
class SelectAugOutcome:
    """What select-aug measured and wrote."""

    run_dir: Path
    scores: tuple[AugmentationScore, ...]
    summary: dict[str, dict[str, Any]]  # per `<dataset>/<attack>/<seed>`: mean_ce per augmentation, selected
    pictures: tuple[Path, ...]
    wall_s: float


def run_select_aug(
    spec: SweepSpec,
    run_dir: Path,
    *,
    augmentations: Sequence[str] = AUGMENTATION_SET,
    points: int = PICTURE_POINTS,
    address: str | None = None,
    suspect: str | None = None,
) -> SelectAugOutcome:
    """Score every augmentation on every (dataset, attack, seed) M_b of the spec, in parallel; write the results.

    With `suspect` (a folder or a hub id, opened here once and pinned to its commit) M_b is that model for
    every (dataset, seed), its rows' attack is `suspect`, and each summary entry names its source."""
    started = time.monotonic()
    run_dir = run_dir.resolve()
    spec = resolve_locations(spec, run_dir)
    source = None if suspect is None else open_suspect(suspect).source  # a bad suspect fails before Ray starts
    named = {} if source is None else {"suspect": pinned_name(source)}
    plan = [
        {"dataset": dataset, "attack": attack, "augmentation": augmentation, "seed": seed, **named}
        for seed in spec.seeds
        for dataset in spec.datasets
        for attack in (spec.attacks if source is None else (SUSPECT,))
        for augmentation in augmentations
    ]
    with ray_session(address):
        request = trial_resources(spec.resources, ray.cluster_resources())
        task = _score_task.options(
            num_cpus=request["cpu"], num_gpus=request["gpu"], max_retries=spec.resources.max_failures
        )
        scores = tuple(ray.get([task.remote(spec_to_dict(spec), cell, points) for cell in plan]))
    pictures = tuple(write_score(run_dir, score)[1] for score in scores)
    summary = selections(scores)
    if source is not None:
        summary = {key: {**entry, "suspect": source} for key, entry in summary.items()}
    write_summary(run_dir, summary)
    return SelectAugOutcome(run_dir, scores, summary, pictures, time.monotonic() - started)


# ------------------------------------------------------------------------------------- study


@ray.remote
def _study_task(spec_dict: dict[str, Any], cell: StudyCell, max_epochs: int, patience: int) -> list[dict[str, Any]]:
    """One study cell's rows, on a worker."""
    spec = spec_from_dict(spec_dict)
    store, device = _worker(spec)
    return run_study_cell(spec, cell, store=store, device=device, max_epochs=max_epochs, patience=patience)


@dataclass(frozen=True)
class StudyOutcome:
    """What the study wrote."""

    run_dir: Path
    files: tuple[Path, ...]
    skipped: int  # cells whose rows the folder already held (a repeated or resumed study)
    wall_s: float


def run_study(
    spec: SweepSpec,
    run_dir: Path,
    cells: Sequence[StudyCell],
    *,
    max_epochs: int,
    patience: int,
    address: str | None = None,
    on_cell: Callable[[StudyCell, int, int], None] | None = None,
) -> StudyOutcome:
    """Every study cell as a parallel Ray task; each cell's rows are written as soon as it finishes."""
    started = time.monotonic()
    run_dir = run_dir.resolve()
    spec = resolve_locations(spec, run_dir)
    todo = [cell for cell in cells if not (run_dir / "study" / f"{cell.stem()}.parquet").is_file()]
    files: list[Path] = []
    with ray_session(address):
        request = trial_resources(spec.resources, ray.cluster_resources())
        task = _study_task.options(
            num_cpus=request["cpu"], num_gpus=request["gpu"], max_retries=spec.resources.max_failures
        )
        pending = {task.remote(spec_to_dict(spec), cell, max_epochs, patience): cell for cell in todo}
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done)
            files.append(write_study_rows(run_dir, cell, ray.get(done)))
            if on_cell is not None:
                on_cell(cell, len(files), len(todo))
    return StudyOutcome(run_dir, tuple(files), len(cells) - len(todo), time.monotonic() - started)


# ------------------------------------------------------------------------------------- tune


def tune_cell(config: dict[str, Any]) -> None:
    """Ray Tune trainable: the MBTSAD cell with the proposed settings on the dev set of each of the spec's seeds
    (its own M_b), reported once: the seed means and the objective of them."""
    spec, cell = trial_inputs({k: v for k, v in config.items() if k != "penalty"})
    store, device = _worker(spec)
    per_seed = {}
    for seed in spec.seeds:
        row = run_trial(spec, dataclasses.replace(cell, seed=seed), store=store, device=device).row
        reference = run_trial(spec, Cell(cell.dataset, cell.attack, "none", None, seed), store=store, device=device).row
        per_seed[seed] = {"asr": row["asr"], "cacc": row["cacc"], "reference_cacc": reference["cacc"]}
    mean = seed_mean(list(per_seed.values()))
    each = {f"{key}_seed{seed}": value for seed, scores in per_seed.items() for key, value in scores.items()}
    tune.report({"objective": objective(**mean, penalty=config["penalty"]), **mean, **each})


def search_space(retrain_lr: float, params: Sequence[str] | None = None) -> dict[str, Any]:
    """SEARCH_SPACE (or its `params`) as Tune domains, which OptunaSearch turns into Optuna distributions; rates
    scale with the cell's retraining rate."""
    domains: dict[str, Any] = {}
    for name in searched(tuple(params) if params else None):
        declared = SEARCH_SPACE[name]
        if isinstance(declared, Choice):
            domains[name] = tune.choice(list(declared.options))
            continue
        low, high = declared.bounds(retrain_lr)
        if declared.integer:
            domains[name] = tune.randint(int(low), int(high) + 1)  # randint excludes its upper end
        else:
            domains[name] = (tune.loguniform if declared.log else tune.uniform)(low, high)
    return domains


@dataclass(frozen=True)
class StudyResult:
    """One (dataset, attack) study after a tune run."""

    key: str  # `<dataset>/<attack>`, as best_params.json names it
    study: str  # the Optuna study name in the run folder's sqlite file
    trials: int  # complete trials in the study, earlier runs included
    best: dict[str, Any]  # the searched settings of the best trial so far
    best_objective: float


@dataclass(frozen=True)
class TuneOutcome:
    """What a tune run left: the studies and the best-values file it updated."""

    run_dir: Path
    studies: tuple[StudyResult, ...]
    best_params: Path
    trials: Path  # tune_trials.parquet: every trial of the run folder, earlier calls' included
    wall_s: float


def run_tuning(
    spec: SweepSpec,
    run_dir: Path,
    *,
    attacks: Sequence[str] | None = None,
    samples: int = 10,
    penalty: float = DEFAULT_PENALTY,
    params: Sequence[str] | None = None,
    address: str | None = None,
    track_uri: str | None = None,
) -> TuneOutcome:
    """Search MBTSAD's settings (`params`, else all of SEARCH_SPACE) per (dataset, attack) on dev data (each trial
    on every seed of the spec, scored by the seed means), `samples` trials each, continuing the run folder's
    studies; the best values go where `sweep` reads them, and each study's trials to an MLflow experiment of its
    name in `track_uri` when one is given."""
    params = searched(tuple(params) if params else None)
    started = time.monotonic()
    run_dir = run_dir.resolve()
    target = best_params_path(spec, run_dir).resolve()
    spec = resolve_locations(dataclasses.replace(spec, evaluate_on="dev", best_params=None), run_dir)
    unknown = [a for a in attacks or () if a not in spec.attacks]
    if unknown:
        raise ValueError(f"attacks {unknown} are not in the spec; valid: {', '.join(spec.attacks)}")
    names = [study_name(d, a, spec.seeds) for d in spec.datasets for a in attacks or spec.attacks]
    trackers = {} if track_uri is None else {name: trial_tracker(track_uri, name) for name in names}
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = spec.seeds[0]
    results = []
    with ray_session(address):
        trainable = tune.with_resources(tune_cell, trial_resources(spec.resources, ray.cluster_resources()))
        for dataset in spec.datasets:
            for attack in attacks or spec.attacks:
                name = study_name(dataset, attack, spec.seeds)
                study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
                searcher = OptunaSearch(  # seeded past earlier runs' draws, so a continued study proposes new points
                    metric="objective", mode="min", study_name=name, storage=storage, seed=seed + len(study.trials)
                )
                cell = Cell(dataset, attack, TUNED_DEFENSE, "ts", seed)
                retrain_lr = defense_setup(spec, cell).teacher.train.lr
                tune.Tuner(
                    trainable,
                    param_space={
                        "spec": spec_to_dict(spec),
                        "cell": dataclasses.asdict(cell),
                        "penalty": penalty,
                        **search_space(retrain_lr, params),
                    },
                    tune_config=tune.TuneConfig(
                        search_alg=searcher, num_samples=samples, max_concurrent_trials=spec.resources.max_concurrent
                    ),
                    run_config=tune.RunConfig(
                        name=f"optuna-{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                        storage_path=str(run_dir),
                        failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
                        callbacks=[trackers[name]] if trackers else None,
                        verbose=0,
                    ),
                ).fit()
                study = optuna.load_study(study_name=name, storage=storage)
                complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
                if not complete:
                    raise RuntimeError(f"tune {dataset}/{attack}: no trial completed (tracebacks under {run_dir})")
                results.append(
                    StudyResult(
                        key=f"{dataset}/{attack}",
                        study=name,
                        trials=len(complete),
                        best=dict(study.best_trial.params),  # all it ran with, earlier runs' settings included
                        best_objective=float(study.best_value),
                    )
                )
    merge_best_params(target, {r.key: r.best for r in results})
    return TuneOutcome(run_dir, tuple(results), target, write_tune_trials(run_dir), time.monotonic() - started)
