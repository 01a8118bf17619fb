"""Sweep specs, trials and the artifact store's sharing, then real local Ray sweeps: end to end, resumed
after the driver is killed, and with a worker node removed mid-sweep."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch

from core.defenses.mbtsad import MbtsadConfig
from orchestration.code_version import describe, running_code_version
from orchestration.presets import PRESETS, preset, smoke
from orchestration.results import TRIAL_SCHEMA, read_rows
from orchestration.spec import (
    RUN_ORDER,
    TABLE_DEFENSES,
    Cell,
    apply_settings,
    attack_setup,
    cells,
    defense_setup,
    parse_value,
    spec_from_dict,
    spec_to_dict,
    table_cell,
)
from orchestration.store import MANIFEST, ArtifactStore
from orchestration.trial import run_trial, trial_id

ROOT = Path(__file__).resolve().parents[1]
# The smoke preset cut further for tests: a backdoor need not take for the plumbing to be exercised.
SMALL = {
    "data.max_train": 600,
    "data.max_dev": 100,
    "data.max_test": 100,
    "training.attack.epochs": 2,
    "defenses": ["none", "ts-ft", "mbtsad", "cft", "strip"],
    "augmentations": ["aeda"],
}


def small_spec(store: Path, **settings: Any) -> Any:
    return apply_settings(smoke(), {**SMALL, "store": str(store), **settings})


# ------------------------------------------------------------------------------------- specs


def test_presets_are_valid_and_round_trip() -> None:
    for name in PRESETS:
        spec = preset(name)
        assert spec_from_dict(spec_to_dict(spec)) == spec
        assert len(cells(spec)) == len(spec.datasets) * len(spec.attacks) * len(spec.seeds) * len(spec.defenses) + len(
            spec.augmentation_datasets
        ) * len(spec.attacks) * len(spec.seeds) * len(spec.augmentations)
    assert preset("smoke").defenses == preset("cpu").defenses == TABLE_DEFENSES  # every row of Tables I, II, IV
    paper = preset("paper")
    assert (
        set(paper.datasets) == {"sst2", "imdb"}
        and len(paper.seeds) > 1
        and set(paper.attacks) == {"badnets", "lwp", "ep"}
    )
    with pytest.raises(ValueError, match="valid: smoke, cpu, base, paper"):
        preset("laptop")


def test_the_nad_rows_are_sst2_rows_of_the_smoke_and_cpu_grids() -> None:
    for spec in (smoke(), apply_settings(preset("cpu"), {"datasets": ["sst2", "imdb"], "best_params": None})):
        plan = cells(spec, {"badnets": {"alpha": 0.3, "beta": 2.0, "distil_lr": 1e-3, "attention_axis": "row"}})
        rows = {(c.dataset, c.attack, c.defense): c for c in plan}
        for attack in spec.attacks:
            nad, cft_teacher = rows["sst2", attack, "nad"], rows["sst2", attack, "mbtsad-cft-teacher"]
            assert nad.augmentation is None and cft_teacher.augmentation == "ts"  # NAD reads no D_a
            order = [c.defense for c in plan if (c.dataset, c.attack) == ("sst2", attack)]
            assert order.index("cft") < order.index("nad") < order.index("mbtsad-cft-teacher") < order.index("reinit")
        imdb = {c.defense for c in plan if c.dataset == "imdb"}  # IMDb's own list of rows stays without them
        assert imdb == (set() if spec.name == "smoke" else {"none", "cft", "ts-ft", "mbtsad", "fine-mixing",
                                                            "fine-purifying", "strip", "rap"})
        # Both carry MBTSAD's tuned values and settings; in nad, alpha weighs L_cls against L_a and beta is unused.
        mbtsad = defense_setup(spec, rows["sst2", "badnets", "mbtsad"])
        for defense in ("nad", "mbtsad-cft-teacher"):
            cell = rows["sst2", "badnets", defense]
            assert (cell.alpha, cell.beta, cell.distil_lr, cell.attention_axis) == (0.3, 2.0, 1e-3, "row")
            config = defense_setup(spec, cell)
            plain = dataclasses.replace(config, terms=mbtsad.terms, teacher_data="augmented", distil_data="augmented")
            assert plain == mbtsad


def test_every_row_a_sweep_runs_lands_in_a_table_row() -> None:
    from tables.layout import FIGURE_ROWS

    placed = {(row.defense, row.augmentation) for row in FIGURE_ROWS}
    for defense in TABLE_DEFENSES:  # the augmentation a cell records is the one its table row reads (nad: none)
        assert (defense, table_cell("sst2", "badnets", defense, 0, {}).augmentation) in placed, defense


def test_unknown_settings_fail_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown setting 'training.max_lenght'.*valid: max_length"):
        apply_settings(smoke(), {"training.max_lenght": 64})
    with pytest.raises(ValueError, match="unknown defenses.*valid: none"):
        apply_settings(smoke(), {"defenses": ["mbtsad", "magic"]})
    with pytest.raises(ValueError, match="TS is the ts-ft row"):
        apply_settings(smoke(), {"augmentations": ["ts"]})
    with pytest.raises(ValueError, match="unknown setting 'rhoo' of FineMixingConfig"):
        apply_settings(smoke(), {"defense_settings.fine-mixing.rhoo": 0.5})
    with pytest.raises(ValueError, match="unknown defense 'fine-mix'"):
        apply_settings(smoke(), {"defense_settings": {"fine-mix": {"rho": 0.5}}})


def test_settings_from_a_file_and_the_command_line_agree() -> None:
    nested = {
        "training": {"max_length": 64, "distil": {"lr": 1e-3}},
        "seeds": [0, 1],
        "defense_settings": {"fine-mixing": {"rho": 0.5}},
    }
    dotted = {
        "training.max_length": parse_value("64"),
        "training.distil.lr": parse_value("1e-3"),
        "seeds": parse_value("[0, 1]"),
        "defense_settings.fine-mixing.rho": parse_value("0.5"),
    }
    assert apply_settings(smoke(), nested) == apply_settings(smoke(), dotted)
    assert apply_settings(smoke(), {"datasets": parse_value("imdb")}).datasets == ("imdb",)
    assert apply_settings(smoke(), {"datasets": parse_value("[sst2, imdb]")}).datasets == ("sst2", "imdb")


def test_stage_settings_reach_the_right_training_runs() -> None:
    spec = apply_settings(smoke(), {"best_params": None})
    mbtsad = defense_setup(spec, Cell("sst2", "badnets", "mbtsad", "ts", 0, alpha=0.5, beta=0.0))
    assert isinstance(mbtsad, MbtsadConfig)
    assert (mbtsad.teacher.train.lr, mbtsad.train.lr, mbtsad.alpha, mbtsad.beta) == (1e-3, 1e-2, 0.5, 0.0)
    assert mbtsad.train.max_length == mbtsad.teacher.train.max_length == 32
    assert defense_setup(spec, Cell("sst2", "badnets", "fine-mixing", None, 0)).cft.train.lr == 1e-3
    assert defense_setup(spec, Cell("sst2", "badnets", "rap", None, 0)).train.lr == 1e-2  # RAP keeps its own rate
    assert defense_setup(spec, Cell("sst2", "badnets", "aug-ft", "eda", 0)).augmentation == "eda"
    ep = attack_setup(apply_settings(spec, {"attacks": ["ep"]}), "ep")
    assert (ep.clean_train.lr, ep.train.lr, ep.train.epochs) == (1e-3, 5e-2, 5)  # EP's row update keeps 5e-2


def test_cells_interleave_groups_and_carry_tuned_weights() -> None:
    spec = apply_settings(smoke(), {"attacks": ["badnets", "lwp"], "seeds": [0, 1], "augmentations": ["aeda"]})
    plan = cells(spec, {"badnets": {"alpha": 0.3, "beta": 2.0}, "sst2/lwp": {"alpha": 0.7}})
    assert len(plan) == 4 * (len(TABLE_DEFENSES) + 1) and len(set(plan)) == len(plan)
    assert [c.defense for c in plan[:4]] == ["none"] * 4  # four backdoored models built side by side first
    group = [c.defense for c in plan if (c.attack, c.seed) == ("lwp", 1)]
    assert group == [*RUN_ORDER, "aug-ft"]  # Table II before the ablations and detectors, Table III last
    weights = {(c.attack, c.defense): (c.alpha, c.beta) for c in plan}
    assert weights["badnets", "cd"] == (0.3, 2.0) and weights["lwp", "mbtsad"] == (0.7, 1.0)
    assert weights["badnets", "cft"] == (None, None)
    ids = {trial_id(spec, c) for c in plan}
    assert len(ids) == len(plan) and trial_id(spec, plan[0]) == trial_id(apply_settings(spec, {}), plan[0])


def test_trials_follow_the_cluster_and_accept_cell_overrides() -> None:
    from orchestration.spec import Resources
    from orchestration.sweep import trial_inputs, trial_resources

    assert trial_resources(Resources(), {"CPU": 16.0}) == {"cpu": 1.0, "gpu": 0.0}
    assert trial_resources(Resources(), {"CPU": 16.0, "GPU": 4.0}) == {"cpu": 1.0, "gpu": 1.0}
    assert trial_resources(Resources(gpus_per_trial=0.25), {"GPU": 1.0})["gpu"] == 0.25
    cell = cells(smoke())[2]
    config = {"spec": spec_to_dict(smoke()), "cell": dataclasses.asdict(cell)}
    assert trial_inputs({**config, "alpha": 0.2}) == (smoke(), dataclasses.replace(cell, alpha=0.2))  # a search space
    with pytest.raises(ValueError, match="unknown trial settings \\['lr'\\].*valid: alpha"):
        trial_inputs({**config, "lr": 0.1})


# ------------------------------------------------------------------------------------- the store shares work


@dataclass
class CountingStore:
    """A real ArtifactStore that also counts the builds it runs, per kind."""

    inner: ArtifactStore
    builds: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get_or_build(self, kind: str, fields: Any, build: Callable[[Path], None]) -> Path:
        def counted(folder: Path) -> None:
            with self.lock:
                self.builds[kind] += 1
            build(folder)

        return self.inner.get_or_build(kind, fields, counted)


def test_one_backdoored_model_and_one_teacher_serve_every_defence(tmp_path: Path) -> None:
    defenses = ["none", "ts-ft", "mbtsad", "mbtsad-no-hid", "cft", "nad", "mbtsad-cft-teacher"]
    spec = small_spec(tmp_path, defenses=defenses)
    store = CountingStore(ArtifactStore(tmp_path))
    plan = [c for c in cells(spec) if c.defense != "aug-ft"]
    with ThreadPoolExecutor(max_workers=len(plan)) as pool:  # all at once: the file lock decides who builds
        results = list(pool.map(lambda c: run_trial(spec, c, store=store, device=torch.device("cpu")), plan))
    rows = [result.row for result in results]
    # One TS-FT teacher (ts-ft, mbtsad, mbtsad-no-hid) and one CFT model (cft, nad, mbtsad-cft-teacher).
    assert store.builds == {"backdoored": 1, "augmented": 1, "retrained": 1, "cft": 1, "trial": len(plan)}
    nad = next(r for r in rows if r["defense"] == "nad")
    assert nad["augmentation"] is None and nad["alpha"] == 1.0 and nad["cacc"] is not None
    assert {r["defense"] for r in rows} == {c.defense for c in plan} and all(r["status"] == "ok" for r in rows)
    assert all(result.computed for result in results)  # each cell is its own row, so each call computed it
    again = run_trial(spec, plan[2], store=store, device=torch.device("cpu"))  # a repeated trial reads its row
    assert again.row == rows[2] and not again.computed and store.builds["trial"] == len(plan)


# ------------------------------------------------------------------------------------- real Ray sweeps


def run_cli(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "cli.py", "sweep", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


def set_args(settings: dict[str, Any]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def test_smoke_sweep_end_to_end_is_reproducible_and_reused(tmp_path: Path) -> None:
    from tables.load import load_results

    run_dir = tmp_path / "run"
    grid = {**SMALL, "defenses": [*SMALL["defenses"], "nad", "mbtsad-cft-teacher"]}  # the NAD rows run as any row
    process = run_cli("--run-dir", str(run_dir), *set_args({**grid, "store": str(tmp_path / "store")}))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    spec = small_spec(tmp_path / "store", defenses=grid["defenses"])
    rows = read_rows(run_dir)
    assert rows.schema == pl.Schema(TRIAL_SCHEMA)
    assert sorted(rows["trial_id"]) == sorted(trial_id(spec, c) for c in cells(spec))
    assert rows["status"].to_list() == ["ok"] * len(rows) and rows["cacc"].is_between(0, 100).all()
    assert rows.filter(pl.col("defense") == "strip")["frr"].is_not_null().all()
    assert rows.filter(pl.col("defense") == "mbtsad")["alpha"].to_list() == [1.0]
    nad_rows = rows.filter(pl.col("defense").is_in(["nad", "mbtsad-cft-teacher"]))
    assert dict(nad_rows.select("defense", "augmentation").iter_rows()) == {"nad": None, "mbtsad-cft-teacher": "ts"}
    assert len(list((tmp_path / "store" / "backdoored").glob(f"*/{MANIFEST}"))) == 1
    assert f"{len(rows)}/{len(rows)} trials ok" in output
    assert all(word in output for word in (" done, ", " running, ", " failed, ", "ETA "))  # the progress lines
    assert not load_results([run_dir]).trials.is_empty()  # the tables read what the sweep wrote
    assert f"0 finished results reused from the store {tmp_path / 'store'}" in output
    assert f"{len(rows)} to compute" in output
    assert rows["code"].to_list() == [describe(running_code_version())] * len(rows)
    # Same seed, same numbers: the whole sweep again from scratch, into another store, gives every metric again.
    fresh = run_cli("--run-dir", str(tmp_path / "fresh"), *set_args({**grid, "store": str(tmp_path / "other")}))
    output, _ = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, output
    assert "0 finished results reused" in output and output.count("(from the store)") == 0
    timing = ("wall_s", "peak_rss_mb")  # measured, not computed: they differ from run to run
    assert read_rows(tmp_path / "fresh").drop(timing).sort("trial_id").equals(rows.drop(timing).sort("trial_id"))
    carried = tmp_path / "carried"  # only the results travel (a few KB a trial), as to another machine
    shutil.copytree(tmp_path / "store" / "trial", carried / "trial")
    again = run_cli("--run-dir", str(tmp_path / "again"), *set_args({**grid, "store": str(carried)}))
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert output.count("(from the store)") == len(rows)  # every row read back, none computed again
    assert sorted(p.name for p in carried.iterdir()) == ["trial"]  # no model was rebuilt to get there
    assert f"{len(rows)} finished results reused" in output and "0 to compute" in output
    progress = [line for line in output.splitlines() if "(from the store)" in line]
    assert all("ETA estimating" in line for line in progress)  # rows from the store set no pace


def test_resume_after_the_driver_is_killed_skips_finished_trials(tmp_path: Path) -> None:
    from orchestration.sweep import resume_sweep

    run_dir, store = tmp_path / "run", tmp_path / "store"
    # More cells than SMALL, each training longer, so the sweep cannot finish between the kill's trigger and the kill.
    longer = {"defenses": [*SMALL["defenses"], "reinit", "cd", "mbtsad-no-hid"], "training.retrain.epochs": 3}
    settings = {**SMALL, **longer, "store": str(store), "resources.max_concurrent": 1}
    process = run_cli("--run-dir", str(run_dir), *set_args(settings), start_new_session=True)
    deadline = time.monotonic() + 240
    while len(list((run_dir / "trials").glob("*.parquet"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.2)
    time.sleep(1.0)  # Tune saves its experiment state on its own clock; resume reads the latest
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in store.glob(f"trial/*/{MANIFEST}")}
    spec = apply_settings(small_spec(store), longer)
    assert 2 <= len(finished) < len(cells(spec))
    outcome = resume_sweep(run_dir)
    assert outcome.failed == 0 and outcome.total == len(cells(spec))
    assert sorted(read_rows(run_dir)["trial_id"]) == sorted(trial_id(spec, c) for c in cells(spec))
    after = {p.parent.name: p.stat().st_mtime_ns for p in store.glob(f"trial/*/{MANIFEST}")}
    assert len(after) == len(cells(spec)) and all(after[k] == v for k, v in finished.items())


def busy_trial_node(cluster: Any) -> Any:
    """A worker node whose raylet has a child process running a trial (`ray::ImplicitFunc.train`)."""
    import psutil
    from ray._private import ray_constants

    for node in cluster.worker_nodes:
        raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
        for child in raylet.children(recursive=True):
            try:
                if "ImplicitFunc.train" in " ".join(child.cmdline()):
                    return node
            except psutil.Error:
                continue
    return None


@pytest.fixture()
def two_worker_cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_removing_a_worker_node_mid_sweep_still_completes(tmp_path: Path, two_worker_cluster: Any) -> None:
    from orchestration.sweep import run_sweep

    spec = small_spec(tmp_path / "store", **{"resources.max_failures": 2})
    removed: list[Any] = []

    def remove_a_busy_node() -> None:
        deadline = time.monotonic() + 120
        while not removed and time.monotonic() < deadline:
            node = busy_trial_node(two_worker_cluster)
            if node is not None and list((tmp_path / "run" / "trials").glob("*.parquet")):
                two_worker_cluster.remove_node(node, allow_graceful=False)
                removed.append(node)
            time.sleep(0.2)

    watcher = threading.Thread(target=remove_a_busy_node, daemon=True)
    watcher.start()
    outcome = run_sweep(spec, tmp_path / "run", address=two_worker_cluster.address)  # ships the project
    watcher.join()
    assert removed, "no trial was running on a worker node to remove"
    assert list((tmp_path / "run" / "tune").glob("*/error.txt")), "Tune recorded no failed attempt to retry"
    rows = read_rows(tmp_path / "run")
    assert outcome.ok == len(cells(spec)) == len(rows) and set(rows["status"]) == {"ok"}


def test_a_uri_store_builds_once_across_nodes_under_the_cluster_lock(tmp_path: Path) -> None:
    import ray

    from orchestration.sweep import NAMESPACE, cluster_lock
    from orchestration.uri_store import UriArtifactStore

    uri, log = f"file://{tmp_path / 'shared'}", tmp_path / "builds.log"

    def build(folder: Path) -> None:
        with log.open("a") as out:
            out.write("built\n")
        time.sleep(1.0)  # long enough for the other node to find the build under way
        (folder / "value.txt").write_text("42")

    @ray.remote(num_cpus=1)
    def fetch(node: int) -> str:
        store = UriArtifactStore(uri, ArtifactStore(tmp_path / f"node{node}-cache"), cluster_lock)
        return (store.get_or_build("demo", {"x": 1}, build) / "value.txt").read_text()

    ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE)
    try:
        assert ray.get([fetch.remote(0), fetch.remote(1)]) == ["42", "42"]
    finally:
        ray.shutdown()
    assert log.read_text() == "built\n"
    assert len(list((tmp_path / "shared" / "demo").glob(f"*/{MANIFEST}"))) == 1
