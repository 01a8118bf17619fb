"""The Ray side of `select-aug`, `study` and `tune`: eq. 9's augmentations and the fidelity study's cells as
parallel Ray tasks, and MBTSAD's settings searched by OptunaSearch inside Ray Tune on dev data only, against the
attacker's backdoor (the oracle objective) or one the defender planted itself (the proxy; orchestration/tuning.py).

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
from rich.table import Table

from core.poison import ProxyBackdoor
from orchestration.artifacts import backdoored
from orchestration.hub import open_suspect, pinned_name
from orchestration.proxy import proxy_scores
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
    OBJECTIVES,
    SEARCH_SPACE,
    STUDY_FILE,
    TUNED_DEFENSE,
    Choice,
    best_params_path,
    leave_one_out,
    merge_best_params,
    objective,
    searched,
    seed_mean,
    study_name,
    tuning_label,
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


TUNE_SETTINGS = ("penalty", "objective_kind", "proxy", "tuned_on")  # a tune trial's config besides spec and cell


def oracle_scores(spec: SweepSpec, cell: Cell, *, store: Store, device: torch.device) -> dict[str, float]:
    """The MBTSAD cell's dev scores against the attacker's own trigger (the oracle objective) and M_b's."""
    row = run_trial(spec, cell, store=store, device=device).row
    reference = run_trial(spec, Cell(cell.dataset, cell.attack, "none", None, cell.seed), store=store, device=device)
    own = reference.row
    return {"asr": row["asr"], "cacc": row["cacc"], "reference_cacc": own["cacc"], "reference_asr": own["asr"]}


def tune_cell(config: dict[str, Any]) -> None:
    """Ray Tune trainable: the MBTSAD cell with the proposed settings on the dev set of each of the spec's seeds and
    each attack of `tuned_on` (the cell's own, or the others when it is left out), scored by the objective named
    `objective_kind`; reported once: the means over those runs, the objective of them, and each run's scores."""
    spec, cell = trial_inputs({k: v for k, v in config.items() if k not in TUNE_SETTINGS})
    store, device = _worker(spec)
    proxy = None if config["objective_kind"] == "oracle" else ProxyBackdoor(**config["proxy"])
    tuned_on = tuple(config["tuned_on"])
    runs = {}
    for attack in tuned_on:
        for seed in spec.seeds:
            run = dataclasses.replace(cell, attack=attack, seed=seed)
            if proxy is None:
                runs[attack, seed] = oracle_scores(spec, run, store=store, device=device)
            else:
                suspect = backdoored(store, spec, run.dataset, attack, seed, device)
                runs[attack, seed] = proxy_scores(spec, run, proxy, suspect, store=store, device=device)
    mean = seed_mean(list(runs.values()))
    own = tuned_on == (cell.attack,)  # the keys of one attack's runs need no attack name
    each = {
        f"{key}_seed{seed}" if own else f"{key}_{attack}_seed{seed}": value
        for (attack, seed), scores in runs.items()
        for key, value in scores.items()
    }
    score = objective(
        asr=mean["asr"], cacc=mean["cacc"], reference_cacc=mean["reference_cacc"], penalty=config["penalty"]
    )
    tune.report({"objective": score, **mean, **each})


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
    tuned_by: str  # how the setting is chosen (tuning_label): oracle, proxy, proxy from lwp+ep
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

    def table(self) -> Table:
        """Each study's best trial: its settings and objective."""
        names = [name for name in SEARCH_SPACE if any(name in study.best for study in self.studies)]
        table = Table(title="MBTSAD tuned on dev data (the best trial's settings)")
        for column in ("dataset/attack", "tuned by", "trials", *names, "objective"):
            table.add_column(column, justify="left" if column in ("dataset/attack", "tuned by") else "right")
        for study in self.studies:
            shown = [study.best.get(name) for name in names]
            table.add_row(
                study.key,
                study.tuned_by,
                str(study.trials),
                *("—" if v is None else str(v) if isinstance(v, str | int) else f"{v:.3g}" for v in shown),
                f"{study.best_objective:.2f}",
            )
        return table


def run_tuning(
    spec: SweepSpec,
    run_dir: Path,
    *,
    attacks: Sequence[str] | None = None,
    samples: int = 10,
    penalty: float = DEFAULT_PENALTY,
    params: Sequence[str] | None = None,
    objective_kind: str = "oracle",
    proxy: ProxyBackdoor | None = None,
    leave_out: bool = False,
    address: str | None = None,
    track_uri: str | None = None,
) -> TuneOutcome:
    """Search MBTSAD's settings (`params`, else all of SEARCH_SPACE) per (dataset, attack) on dev data (each trial
    on every seed of the spec, scored by the seed means), `samples` trials each, continuing the run folder's
    studies; the best values go where `sweep` reads them, labelled with how they were chosen (`tuned_by`), and each
    study's trials to an MLflow experiment of its name in `track_uri` when one is given.

    `objective_kind` is `oracle` (dev ASR with the attacker's trigger) or `proxy` (dev ASR with the defender's own
    backdoor `proxy`, ProxyBackdoor() by default, planted into each M_b). With `leave_out`, each attack's setting is
    tuned on the spec's other attacks' M_b instead of its own (each trial runs on all of them)."""
    params = searched(tuple(params) if params else None)
    if objective_kind not in OBJECTIVES:
        raise ValueError(f"unknown tuning objective {objective_kind!r}; valid: {', '.join(OBJECTIVES)}")
    if proxy is not None and objective_kind != "proxy":
        raise ValueError("a proxy backdoor is only planted for the proxy objective")
    proxy = ProxyBackdoor() if objective_kind == "proxy" and proxy is None else proxy
    started = time.monotonic()
    run_dir = run_dir.resolve()
    target = best_params_path(spec, run_dir).resolve()
    spec = resolve_locations(dataclasses.replace(spec, evaluate_on="dev", best_params=None), run_dir)
    unknown = [a for a in attacks or () if a not in spec.attacks]
    if unknown:
        raise ValueError(f"attacks {unknown} are not in the spec; valid: {', '.join(spec.attacks)}")
    tuned_on = {a: leave_one_out(spec.attacks, a) if leave_out else (a,) for a in attacks or spec.attacks}
    names = [study_name(d, a, spec.seeds, objective_kind, on) for d in spec.datasets for a, on in tuned_on.items()]
    trackers = {} if track_uri is None else {name: trial_tracker(track_uri, name) for name in names}
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = spec.seeds[0]
    results = []
    with ray_session(address):
        trainable = tune.with_resources(tune_cell, trial_resources(spec.resources, ray.cluster_resources()))
        for dataset in spec.datasets:
            for attack, on in tuned_on.items():
                name = study_name(dataset, attack, spec.seeds, objective_kind, on)
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
                        "objective_kind": objective_kind,
                        "proxy": None if proxy is None else dataclasses.asdict(proxy),
                        "tuned_on": list(on),
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
                result = StudyResult(
                    key=f"{dataset}/{attack}",
                    study=name,
                    tuned_by=tuning_label(objective_kind, attack, on),
                    trials=len(complete),
                    best=dict(study.best_trial.params),  # all it ran with, earlier runs' settings included
                    best_objective=float(study.best_value),
                )
                results.append(result)
                # each study's best as it finishes, so a stopped run keeps what its finished studies found
                merge_best_params(target, {result.key: {**result.best, "tuned_by": result.tuned_by}})
    return TuneOutcome(run_dir, tuple(results), target, write_tune_trials(run_dir), time.monotonic() - started)
