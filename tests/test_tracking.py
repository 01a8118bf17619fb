"""`sweep --track mlflow`: a real tiny sweep on a local Ray logs one MLflow run per trial, read back with MLflow's
client from the local store; without MLflow the option fails at once, naming the pip command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from orchestration.results import read_rows

ROOT = Path(__file__).resolve().parents[1]
# Two trials on a sliver of the smoke grid: the tracking, not the training, is under test.
TINY = {
    "data.max_train": 200,
    "data.max_dev": 40,
    "data.max_test": 40,
    "training.attack.epochs": 1,
    "defenses": ["none", "cft"],
    "augmentations": [],
}


def sweep(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """`cli.py sweep ARGS` in a fresh interpreter, after running `prelude` in it."""
    code = f"import sys\n{prelude}\nfrom cli import cli\ncli({['sweep', *args]!r})\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def set_args(settings: dict[str, object]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def test_track_mlflow_logs_one_run_per_trial_with_its_settings_and_metrics(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    done = sweep("--run-dir", str(run_dir), "--track", "mlflow", *set_args({**TINY, "store": str(tmp_path / "s")}))
    assert done.returncode == 0, done.stdout + done.stderr
    uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    assert f"mlflow ui --backend-store-uri {uri}" in done.stderr
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("smoke")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    rows = read_rows(run_dir)
    assert len(rows) == 2 and len(runs) == len(rows)
    by_defense = {run.data.params["cell/defense"]: run for run in runs}
    assert set(by_defense) == {"none", "cft"}
    for row in rows.iter_rows(named=True):
        run = by_defense[row["defense"]]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["cacc"] == pytest.approx(row["cacc"])
        assert run.data.metrics["asr"] == pytest.approx(row["asr"])
        assert run.data.params["spec/training/attack/epochs"] == "1" and run.data.params["spec/model"] == "tiny"
    assert rows.filter(pl.col("defense") == "cft")["status"].to_list() == ["ok"]


def test_track_mlflow_without_mlflow_names_the_pip_command(tmp_path: Path) -> None:
    done = sweep(
        "--run-dir", str(tmp_path / "run"), "--track", "mlflow", prelude="sys.modules['mlflow'] = None  # not installed"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Error: --track mlflow needs MLflow: pip install mlflow-skinny" in done.stderr
    assert not (tmp_path / "run").exists()  # failed before the sweep started
