"""The Ray Tune side of a sweep: the trainable, per-trial resources, build locks, result rows, live progress.

Every Ray Tune import of the project lives here (orchestration/cluster.py reads only Ray's cluster
schema), so the next change of Tune's reporting API is local to this file.

The trainable's config is `{"spec": <spec_to_dict>, "cell": <Cell as a dict>}`; any further key must
be a `Cell` field and replaces the cell's value, so a search space over `alpha` and `beta` (the
`tune` command) reuses this trainable unchanged. The driver writes each trial's row to
`<run dir>/trials/<trial_id>.parquet` as its result arrives, so rows come back from every node.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0 Tune then prints nothing; SweepMonitor reports

import ray
import torch
import yaml
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from rich.console import Console
from rich.live import Live

from core.data import resolve_data_dir
from orchestration.code_version import running_code_version
from orchestration.hub import resolve_model
from orchestration.live import SweepProgress, clock
from orchestration.memory import resident_mb
from orchestration.overrides import apply_overrides
from orchestration.results import row_path, trial_row, write_row
from orchestration.spec import Cell, Resources, SweepSpec, cells, read_best_params, spec_from_dict, spec_to_dict
from orchestration.trial import TrialResult, run_trial, stored_results, trial_id
from orchestration.uri_store import open_store

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "tune"  # Ray Tune's experiment folder inside the run folder (what --resume restores)
SPEC_FILE = "spec.yaml"  # the resolved spec, beside the results
NAMESPACE = "mbtsad"
LOCKS = "mbtsad-build-locks"  # the named actor that leases cluster-wide build locks for a URI store
LEASE_S = 120.0  # a build lock lapses this long after its holder stops renewing it (a lost node)
SHIPPED_EXCLUDES = [".git", "runs", ".venv", ".pytest_cache", ".ruff_cache", "*.parquet"]  # not sent to workers
CELL_ID = "cell_id"  # the reported name of a row's trial_id
COMPUTED = "computed"  # reported beside the row: False when the store already held it
RESIDENT = "resident_mb"  # reported beside the row: the actor's resident memory once the trial has released its own
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ------------------------------------------------------------------------------------- trials


def trial_resources(resources: Resources, cluster: Mapping[str, float]) -> dict[str, float]:
    """One trial's request: its CPUs, and a GPU (or the given share of one) where the cluster has GPUs."""
    gpus = resources.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) > 0 else 0.0
    return {"cpu": resources.cpus_per_trial, "gpu": gpus}


def trial_inputs(config: Mapping[str, Any]) -> tuple[SweepSpec, Cell]:
    """The spec and cell of a trainable's config; extra keys must be Cell fields and replace the cell's, converted
    to their types (a search space's numpy floats, a string) and checked like any other setting."""
    names = {f.name for f in dataclasses.fields(Cell)}
    extra = {k: v for k, v in config.items() if k not in ("spec", "cell")}
    if unknown := sorted(set(extra) - names):
        raise ValueError(f"unknown trial settings {unknown}; besides spec and cell, valid: {', '.join(sorted(names))}")
    return spec_from_dict(config["spec"]), apply_overrides(Cell(**config["cell"]), extra)


def train_cell(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one cell, computed (or read from the store) and reported once."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec, cell = trial_inputs(config)
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_trial)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    store = open_store(str(spec.store), lock=cluster_lock)
    result = run_trial(spec, cell, store=store, device=device)
    tune.report({**reported(result), RESIDENT: resident_mb()})


@ray.remote(num_cpus=0)
class BuildLocks:
    """Leases on artifact keys, so one node at a time builds an artifact of a URI store."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, float]] = {}

    def acquire(self, key: str, owner: str, lease_s: float) -> bool:
        """Take or renew the lease on `key`; False while another owner holds an unexpired one."""
        now = time.monotonic()
        holder, expires = self.held.get(key, (owner, 0.0))
        if holder != owner and expires > now:
            return False
        self.held[key] = (owner, now + lease_s)
        return True

    def release(self, key: str, owner: str) -> None:
        """Give the lease back (only its owner can)."""
        if self.held.get(key, ("", 0.0))[0] == owner:
            del self.held[key]


@contextmanager
def cluster_lock(key: str) -> Iterator[None]:
    """Hold the cluster-wide build lock on `key`, renewing its lease until the block ends."""
    locks = BuildLocks.options(name=LOCKS, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()
    owner = uuid4().hex
    while not ray.get(locks.acquire.remote(key, owner, LEASE_S)):
        time.sleep(1.0)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 4):
            ray.get(locks.acquire.remote(key, owner, LEASE_S))

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        ray.get(locks.release.remote(key, owner))


def trial_name(trial: Any) -> str:
    """`sst2-badnets-aug-ft-eda-s0`: the cell in words."""
    cell = trial.config["cell"]
    augmentation = cell["augmentation"] if cell["defense"] == "aug-ft" else None
    parts = (cell["dataset"], cell["attack"], cell["defense"], augmentation, f"s{cell['seed']}")
    return "-".join(str(p) for p in parts if p is not None).replace("/", "_")


def trial_dirname(trial: Any) -> str:
    """The trial's folder under tune/: its name and Tune's id."""
    return f"{trial_name(trial)}_{trial.trial_id}"


# ------------------------------------------------------------------------------------- the driver's view


def failed_row(config: Mapping[str, Any], error: str, wall_s: float) -> dict[str, Any]:
    """The row of a trial that ran out of retries. It never raises: where the trial's settings cannot give its id
    (often the very input that failed the trial), the row is filled from the raw config and says why."""
    try:
        spec, cell = trial_inputs(config)
        return trial_row(trial_id=trial_id(spec, cell), cell=cell, model=spec.model, wall_s=wall_s, error=error)
    except Exception as err:  # any error: recording a failure must not fail the driver
        return raw_failed_row(config, f"{error}; its settings do not load either: {type(err).__name__}: {err}", wall_s)


def raw_failed_row(config: Mapping[str, Any], error: str, wall_s: float) -> dict[str, Any]:
    """A failed row read straight from a trainable's config, each field only where it has the schema's type;
    its id is a hash of the whole config, so the same trial gets the same row."""
    cell = config.get("cell")
    cell = cell if isinstance(cell, Mapping) else {}
    spec = config.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    seed = cell.get("seed")
    return {
        "trial_id": hashlib.sha256(repr(dict(config)).encode()).hexdigest()[:20],
        **{name: text(cell.get(name)) for name in ("dataset", "attack", "defense", "augmentation")},
        "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        "status": "failed",
        "error": error[:2000],
        "alpha": number(cell.get("alpha")),
        "beta": number(cell.get("beta")),
        "distil_lr": number(cell.get("distil_lr")),
        "distil_epochs": cell.get("distil_epochs") if type(cell.get("distil_epochs")) is int else None,
        "attention_axis": text(cell.get("attention_axis")),
        "model": text(spec.get("model")),
        "wall_s": round(wall_s, 2),
    }


def last_line(trace: str | None) -> str:
    """The exception line of a traceback (Ray wraps the trial's own exception last)."""
    lines = [line.strip() for line in (trace or "").splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error")[:1000]


def trial_error(trial: Any) -> str:
    """The latest failure of a trial, from the error file Tune has just written on the driver."""
    path = Path(trial.error_file) if trial.error_file else None
    return last_line(path.read_text() if path is not None and path.is_file() else None)


def reported(result: TrialResult) -> dict[str, Any]:
    """A result row as the trainable reports it: Tune stamps its own `trial_id` on results, so ours is `cell_id`;
    `computed` says whether this trial computed the row or read it from the store."""
    row = result.row
    return {**{k: v for k, v in row.items() if k != "trial_id"}, CELL_ID: row["trial_id"], COMPUTED: result.computed}


def row_of(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The result row inside a Tune result (None for a result without one)."""
    return None if CELL_ID not in result else {**result, "trial_id": result[CELL_ID]}


def memory_note(row: Mapping[str, Any], resident: float | None) -> str:
    """`, peak 2393 MB, 708 MB kept`: the trial's peak resident memory and what its actor holds after it."""
    peak = row.get("peak_rss_mb")
    return (f", peak {peak:.0f} MB" if peak is not None else "") + (
        f", {resident:.0f} MB kept" if resident is not None else ""
    )


class SweepMonitor(tune.Callback):
    """Writes each trial's row as it arrives and keeps a live display of the sweep's progress."""

    def __init__(self, run_dir: Path, title: str, total: int) -> None:
        self.run_dir, self.title, self.total = run_dir, title, total
        self._reset()

    def _reset(self) -> None:
        self.progress = SweepProgress(total=self.total)
        self.console = Console(stderr=True)
        self.live: Live | None = None
        self.started: dict[str, float] = {}
        self.scores: dict[str, str] = {}
        self.restored: set[str] = set()  # trials whose row the store already held
        self.drawn = 0.0

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks for --resume; the display is rebuilt
        return {"run_dir": self.run_dir, "title": self.title, "total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, **info: Any) -> None:
        self.progress = SweepProgress(total=self.total)
        if self.console.is_terminal:
            self.live = Live(self.progress.render(self.title), console=self.console, refresh_per_second=2)
            self.live.start()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        row = row_of(result)
        if row is None:
            return
        write_row(self.run_dir, row)
        scores = ", ".join(f"{k.upper()} {row[k]:.2f}" for k in ("cacc", "asr") if row.get(k) is not None)
        if not result.get(COMPUTED, True):
            self.restored.add(trial.trial_id)
        origin = " (from the store)" if trial.trial_id in self.restored else ""
        memory = memory_note(row, result.get(RESIDENT))
        self.scores[trial.trial_id] = f"{scores} in {clock(row['wall_s'])}{memory}{origin}"

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.restored:  # the pace counts only trials computed by this session
            self.progress.finished_here += 1
        self._count(trials, done=trial)
        self._note(f"{trial_name(trial)}: {self.scores.pop(trial.trial_id, 'done')}")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.progress.retries += 1
        self._note(f"{trial_name(trial)}: failed, retrying ({trial_error(trial)})")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        wall = time.monotonic() - self.started.get(trial.trial_id, time.monotonic())
        error = trial_error(trial)
        write_row(self.run_dir, failed_row(trial.config, error, wall))
        self.progress.finished_here += 1
        self._count(trials, failed=trial)
        self._note(f"{trial_name(trial)}: FAILED ({error}; traceback in {trial.path}/error.txt)")

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._count(trials)
        if self.live is not None and time.monotonic() - self.drawn > 0.5:
            self.drawn = time.monotonic()
            self.live.update(self.progress.render(self.title))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._count(trials)
        self.close()

    def _count(self, trials: list[Any], *, done: Any = None, failed: Any = None) -> None:
        """Trial counts by status; a trial being reported as done or failed may not show it yet."""
        statuses = ["TERMINATED" if t is done else "ERROR" if t is failed else t.status for t in trials]
        self.progress.done = statuses.count("TERMINATED")
        self.progress.running = statuses.count("RUNNING")
        self.progress.failed = statuses.count("ERROR")

    def _note(self, line: str) -> None:
        self.progress.last = line
        if self.live is None:  # a log file or pipe: one line per finished trial instead of a live display
            self.console.print(f"{line} | {self.progress.summary()}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self.progress.render(self.title))
            self.live.stop()
            self.live = None


class TrialTracker(MLflowLoggerCallback):
    """Ray Tune's MLflow logger: one MLflow run per trial, its config as params and its row as metrics. It pickles
    as its settings (the logger holds the mlflow module, which does not pickle), so a resumed sweep keeps logging."""

    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "experiment_name": self.experiment_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        MLflowLoggerCallback.__init__(self, **state)


def trial_tracker(uri: str, experiment: str) -> TrialTracker:
    """The MLflow logger of `--track mlflow`; MLflow is an optional dependency, so without it say how to get it."""
    try:
        import mlflow  # noqa: F401  (only to know it is there: the logger imports it itself)
    except ImportError:
        raise ValueError(
            "--track mlflow needs MLflow: pip install mlflow-skinny (or pip install mlflow, which has `mlflow ui`)"
        ) from None
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its notices on creating the database would break the log
    return TrialTracker(uri, experiment_name=experiment)


# ------------------------------------------------------------------------------------- running a sweep


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep (or its resumption) ended with."""

    run_dir: Path
    total: int
    ok: int
    failed: int
    wall_s: float


def resolve_locations(spec: SweepSpec, run_dir: Path) -> SweepSpec:
    """Absolute paths for the store, the data and a model folder, a hub id's commit, and the alpha/beta file if any."""
    store = (
        spec.store
        if spec.store and "://" in spec.store
        else str(Path(spec.store or run_dir.parent / "store").resolve())
    )
    best = Path(spec.best_params) if spec.best_params else run_dir.parent / "best_params.json"
    if spec.best_params and not best.is_file():
        raise FileNotFoundError(f"best_params file {best} not found")
    return dataclasses.replace(
        spec,
        store=store,
        model=resolve_model(spec.model),  # a hub id pinned to its commit here, once, for every node
        data_dir=str(resolve_data_dir(spec.data_dir).resolve()),
        best_params=str(best.resolve()) if best.is_file() else None,
    )


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the block: the caller's if already started, else an embedded local one or `address`'s cluster,
    to which the project is shipped as the job's working directory."""
    # Tune logs each failed attempt's traceback; SweepMonitor prints one line and the trial's error.txt has it all
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        yield
        return
    runtime_env: dict[str, Any] = {"env_vars": WORKER_ENV}
    if address is not None:
        runtime_env.update(working_dir=str(PROJECT_ROOT), excludes=SHIPPED_EXCLUDES)
    ray.init(
        address=address,
        namespace=NAMESPACE,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,  # Ray's start-up notices would scroll the live display away
        runtime_env=runtime_env,
    )
    try:
        yield
    finally:
        ray.shutdown()


def _trainable(spec: SweepSpec) -> Any:
    """The trainable with the resources each trial asks of this cluster."""
    return tune.with_resources(train_cell, trial_resources(spec.resources, ray.cluster_resources()))


def fit_through_memory_kills(tuner: tune.Tuner, run_dir: Path, trainable: Any, max_failures: int) -> Any:
    """Tune's fit(), continued each time Ray's memory monitor kills a trial's worker; the results grid.

    Tune retries a trial whose worker dies (`resources.max_failures`), but a worker killed by Ray's memory monitor
    fails its actor task with OutOfMemoryError, which Tune's actor manager (Ray 2.x) does not expect: fit() raises
    instead of retrying. The experiment is then restored as `--resume` would: finished trials stay, the killed one
    and any other trial running then start again (their finished artifacts and rows are read from the store). A
    kill with no row written since the previous kill counts as a failure of the trials running; more than
    `max_failures` of them in a row stop the sweep with the error.
    """
    strikes, rows = 0, len(list((run_dir / "trials").glob("*.parquet")))
    while True:
        try:
            return tuner.fit()
        except RuntimeError as error:
            if not isinstance(error.__cause__, ray.exceptions.OutOfMemoryError):
                raise
            written = len(list((run_dir / "trials").glob("*.parquet")))
            strikes, rows = (0 if written > rows else strikes + 1), written
            if strikes > max_failures:
                raise RuntimeError(
                    f"Ray's memory monitor killed the running trials {strikes} times with no trial finished in "
                    f"between; give each trial more memory (fewer at a time: resources.max_concurrent) and run "
                    f"python cli.py sweep --resume {run_dir}"
                ) from error
            reason = (str(error.__cause__).splitlines() or ["no message"])[0]
            Console(stderr=True, soft_wrap=True).print(
                f"Ray's memory monitor killed a trial's worker ({reason}); restoring the sweep: its unfinished "
                "trials run again",
                highlight=False,
            )
            tuner = tune.Tuner.restore(str(run_dir / EXPERIMENT), trainable, resume_unfinished=True)


def _outcome(run_dir: Path, grid: Any, total: int, started: float) -> SweepOutcome:
    """Write any row the callback missed (a driver killed between a result and its file), then count."""
    ok = failed = 0
    for result in grid:
        if result.error is not None:
            failed += 1
            if result.config is None:  # it never reported; SweepMonitor wrote its row from the trial's settings
                continue
            row = failed_row(result.config, last_line(str(result.error)), 0.0)
            if not row_path(run_dir, row["trial_id"]).is_file():
                write_row(run_dir, row)
        elif (row := row_of(result.metrics or {})) is not None:
            ok += 1
            if not row_path(run_dir, row["trial_id"]).is_file():
                write_row(run_dir, row)
    return SweepOutcome(run_dir=run_dir, total=total, ok=ok, failed=failed, wall_s=time.monotonic() - started)


def announce(spec: SweepSpec, plan: list[Cell]) -> None:
    """Say, before any trial starts, how many results this code already has in the store and how many it computes."""
    reused = stored_results(spec, plan, open_store(spec.store))
    Console(stderr=True, soft_wrap=True).print(
        f"sweep {spec.name}: {len(plan)} trials; {reused} finished results reused from the store "
        f"{spec.store} (code {running_code_version()['source']}), {len(plan) - reused} to compute"
    )


def run_sweep(
    spec: SweepSpec, run_dir: Path, *, address: str | None = None, track_uri: str | None = None
) -> SweepOutcome:
    """Run every cell of `spec` as a Ray Tune trial; rows land in `<run_dir>/trials/` as trials finish, and in
    the MLflow tracking store `track_uri` too when one is given."""
    started = time.monotonic()
    run_dir = run_dir.resolve()
    spec = resolve_locations(spec, run_dir)
    if (run_dir / EXPERIMENT).exists():  # the same command again continues its sweep; other settings need a new folder
        if (run_dir / SPEC_FILE).is_file() and spec_from_dict(
            yaml.safe_load((run_dir / SPEC_FILE).read_text())
        ) == spec:
            return resume_sweep(run_dir, address=address)
        raise ValueError(f"{run_dir} holds a sweep with other settings: pick another --run-dir (or --resume {run_dir})")
    plan = cells(spec, read_best_params(Path(spec.best_params) if spec.best_params else None))
    tracking = [] if track_uri is None else [trial_tracker(track_uri, spec.name)]
    announce(spec, plan)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SPEC_FILE).write_text(yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
    with ray_session(address):
        tuner = tune.Tuner(
            _trainable(spec),
            param_space={"spec": spec_to_dict(spec), "cell": tune.grid_search([dataclasses.asdict(c) for c in plan])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.resources.max_concurrent,
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(run_dir),
                failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
                callbacks=[SweepMonitor(run_dir, f"sweep {spec.name}", len(plan)), *tracking],
                verbose=0,
            ),
        )
        grid = fit_through_memory_kills(tuner, run_dir, _trainable(spec), spec.resources.max_failures)
    return _outcome(run_dir, grid, len(plan), started)


def resume_sweep(run_dir: Path, *, address: str | None = None) -> SweepOutcome:
    """Continue a sweep whose driver stopped: finished trials stay, unfinished and failed ones run again."""
    started = time.monotonic()
    run_dir = run_dir.resolve()
    if not (run_dir / EXPERIMENT / "tuner.pkl").is_file() or not (run_dir / SPEC_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} holds no sweep to resume (no {SPEC_FILE} and {EXPERIMENT}/tuner.pkl)")
    spec = spec_from_dict(yaml.safe_load((run_dir / SPEC_FILE).read_text()))
    announce(spec, cells(spec, read_best_params(Path(spec.best_params) if spec.best_params else None)))
    with ray_session(address):
        tuner = tune.Tuner.restore(
            str(run_dir / EXPERIMENT), _trainable(spec), resume_unfinished=True, resume_errored=True
        )
        grid = fit_through_memory_kills(tuner, run_dir, _trainable(spec), spec.resources.max_failures)
    return _outcome(run_dir, grid, len(grid), started)
