"""The fidelity study: per-epoch rows of TS-FT and MBTSAD for each profile and rate regime, and their report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from orchestration.presets import smoke
from orchestration.study import STUDY_SCHEMA, StudyCell, cell_spec, study_cells
from tables.study import markdown, read_study, summary, swings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {k: v for k, v in STUDY_SCHEMA.items() if k in ("base_lr", "distil_lr", "cacc", "asr", "clean_flip")}


def test_cells_cover_profiles_and_regimes_and_set_the_rates() -> None:
    spec = smoke()
    cells = study_cells(spec, profiles=("project", "openbackdoor"), model_lr=1e-4, regimes=("paper", "model"))
    assert [(c.profile, c.regime, c.base_lr) for c in cells] == [
        ("project", "paper", 2e-5),
        ("project", "model", 1e-4),
        ("openbackdoor", "paper", 2e-5),
        ("openbackdoor", "model", 1e-4),
    ]
    variant = cell_spec(spec, cells[3], max_epochs=6, patience=2)
    assert variant.attack_profile == "openbackdoor" and variant.training.distil.lr == pytest.approx(2.5e-3)
    assert variant.training.retrain.epochs == 6 and variant.training.distil.patience == 2
    with pytest.raises(ValueError, match="unknown rate regimes"):
        study_cells(spec, profiles=("project",), model_lr=1e-4, regimes=("bert",))


def test_distillation_multiples_name_the_cell_and_set_the_distillation_rate() -> None:
    spec = smoke()
    (paper,) = study_cells(spec, profiles=("project",), model_lr=2e-4, regimes=("model",))
    (lower,) = study_cells(spec, profiles=("project",), model_lr=2e-4, regimes=("model",), distil_ratios=(5, 2.5))
    assert paper.stem() == "sst2-badnets-project-model-0" and lower.stem() == "sst2-badnets-project-model-0-x5-2.5"
    assert cell_spec(spec, lower, max_epochs=4, patience=1, distil_ratio=5).training.distil.lr == pytest.approx(1e-3)
    assert cell_spec(spec, lower, max_epochs=4, patience=1).training.retrain.lr == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="must be positive"):
        study_cells(spec, profiles=("project",), model_lr=2e-4, regimes=("model",), distil_ratios=(0,))


def _rows(
    asr: list[float], stage: str, seed: int = 0, kept: int = 1, distil_lr: float | None = 2.5e-3
) -> list[dict[str, object]]:
    cell = {"dataset": "sst2", "attack": "badnets", "profile": "project", "regime": "model", "base_lr": 1e-4}
    return [
        {
            **cell,
            "distil_lr": distil_lr if stage == "mbtsad" else None,
            "seed": seed,
            "stage": stage,
            "epoch": e,
            "cacc": 80.0 + e,
            "asr": a,
            "clean_flip": 9.0,
            "selected": e == kept,
        }
        for e, a in enumerate(asr, start=1)
    ]


def test_the_swing_is_the_largest_epoch_to_epoch_change_and_seeds_are_averaged() -> None:
    rows = pl.DataFrame(
        _rows([50.0, 24.0, 40.0], "mbtsad", seed=0, kept=2) + _rows([30.0, 35.0], "mbtsad", seed=1, kept=1),
        schema_overrides=SCHEMA,
    )
    assert sorted(swings(rows)["swing"].to_list()) == [5.0, 26.0]
    (line,) = summary(rows).iter_rows(named=True)
    assert line["seeds"] == 2 and line["asr_mean"] == pytest.approx(27.0) and line["swing_mean"] == pytest.approx(15.5)
    assert "| badnets | project | model (0.0001) | mbtsad (0.0025) | 2 | 81.50 ± 0.71 | 27.00 ± 4.24 |" in markdown(
        rows
    )
    teacher = pl.DataFrame(_rows([60.0, 70.0], "ts-ft", kept=1), schema_overrides=SCHEMA)
    staged = pl.concat([rows, teacher])
    assert summary(staged)["stage"].to_list() == ["ts-ft", "mbtsad"]  # the teacher first, as Algorithm 1 runs
    assert summary(staged)["swing_mean"].to_list() == pytest.approx([10.0, 15.5])  # null distil_lr joins too


def test_a_cell_studied_again_counts_its_teacher_once(tmp_path: Path) -> None:
    first = pl.DataFrame(
        _rows([60.0, 70.0], "ts-ft") + _rows([50.0, 24.0], "mbtsad", distil_lr=5e-3), schema_overrides=SCHEMA
    )
    again = pl.DataFrame(
        _rows([60.0, 70.0], "ts-ft") + _rows([30.0, 35.0], "mbtsad", distil_lr=1e-3), schema_overrides=SCHEMA
    )
    (tmp_path / "study").mkdir()
    first.write_parquet(tmp_path / "study" / "a.parquet")
    again.write_parquet(tmp_path / "study" / "b.parquet")
    rows = read_study(tmp_path)
    assert len(rows) == 6 and summary(rows).filter(pl.col("stage") == "ts-ft")["seeds"].to_list() == [1]


def test_each_distillation_rate_is_its_own_line() -> None:
    rows = pl.DataFrame(
        _rows([50.0, 24.0], "mbtsad", kept=2, distil_lr=5e-3) + _rows([30.0, 35.0], "mbtsad", kept=1, distil_lr=1e-3),
        schema_overrides=SCHEMA,
    )
    lines = summary(rows).sort("distil_lr")
    assert lines["distil_lr"].to_list() == [1e-3, 5e-3] and lines["asr_mean"].to_list() == [30.0, 24.0]
    assert lines["swing_mean"].to_list() == [5.0, 26.0]


def test_the_study_command_writes_rows_per_epoch_and_its_report(tmp_path: Path) -> None:
    small = {
        "data.max_train": 400,
        "data.max_dev": 100,
        "data.max_test": 100,
        "training.attack.epochs": 1,
        "store": str(tmp_path / "store"),
        "resources.max_concurrent": 1,
    }
    sets = [arg for key, value in small.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    args = ["study", *sets, "--run-dir", str(tmp_path / "study"), "--profile", "openbackdoor", "--regime", "model"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    rates = ("--model-lr", "1e-3", "--distil-ratio", "5", "--distil-ratio", "2")
    done = subprocess.run(
        [sys.executable, "cli.py", *args, *rates, "--max-epochs", "3", "--patience", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (file,) = (tmp_path / "study" / "study").glob("*.parquet")
    assert file.name == StudyCell("sst2", "badnets", "openbackdoor", "model", 1e-3, 0, (5, 2)).stem() + ".parquet"
    rows = pl.read_parquet(file)
    assert rows.schema == pl.Schema(STUDY_SCHEMA)
    assert rows.filter(pl.col("stage") == "none")["epoch"].to_list() == [0]
    assert rows.filter(pl.col("stage") == "mbtsad")["distil_lr"].unique().sort().to_list() == pytest.approx(
        [2e-3, 5e-3]
    )
    for stage, distil_lr in (("ts-ft", None), ("mbtsad", 5e-3), ("mbtsad", 2e-3)):
        epochs = rows.filter(pl.col("stage") == stage, pl.col("distil_lr").eq_missing(distil_lr))
        assert 1 <= len(epochs) <= 3 and epochs["epoch"].to_list() == list(range(1, len(epochs) + 1))
        assert epochs["selected"].sum() == 1 and epochs["asr"].is_between(0, 100).all()
        assert epochs["dev_cacc"].is_not_null().all()
    assert (tmp_path / "study" / "study.md").is_file() and (tmp_path / "study" / "study-badnets.png").is_file()
    assert len(list((tmp_path / "store" / "backdoored").glob("*/artifact.json"))) == 1  # M_b is a store artifact
