"""The model's counterpart of the paper's rates: clean fine-tuning per rate, the choice rule, the CLI report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import cli
from core.data import Splits
from core.models import Classifier
from core.rates import DISTIL_RATIO, RateCurve, RateSearch, choose_rate, rate_curve, stage_rates
from core.train import TrainConfig


def test_the_best_rate_wins_and_a_tie_goes_to_the_smaller() -> None:
    curves = [RateCurve(2e-5, (70.0, 75.0)), RateCurve(1e-4, (80.0, 84.0)), RateCurve(2e-4, (84.1, 83.0))]
    assert choose_rate(curves, tolerance=0.0) == 2e-4
    assert choose_rate(curves, tolerance=0.2) == 1e-4  # 84.0 is within 0.2 of 84.1
    assert choose_rate(curves, tolerance=20.0) == 2e-5
    assert stage_rates(1e-4) == {"attack": 1e-4, "retrain": 1e-4, "distil": pytest.approx(DISTIL_RATIO * 1e-4)}
    assert DISTIL_RATIO == pytest.approx(25.0)
    with pytest.raises(ValueError, match="rates"):
        RateSearch(rates=(1e-4, -1.0))


def test_a_rate_curve_has_one_dev_score_per_epoch_and_leaves_the_model(tiny: Classifier, sst2_small: Splits) -> None:
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    config = TrainConfig(lr=1e-3, epochs=2, max_length=32)
    curve = rate_curve(tiny, sst2_small.train, sst2_small.dev, config, seed=0)
    assert curve.lr == 1e-3 and len(curve.dev_accuracy) == 2 and all(0 <= a <= 100 for a in curve.dev_accuracy)
    assert all(torch.equal(before[k], v) for k, v in tiny.model.state_dict().items())  # trained a copy
    assert rate_curve(tiny, sst2_small.train, sst2_small.dev, config, seed=0) == curve  # same seed, same scores


def test_the_rates_command_reports_each_curve_and_the_sweep_settings(tmp_path: Path) -> None:
    out = tmp_path / "rates.json"
    args = ["rates", "--model", "tiny", "--max-train", "300", "--epochs", "1", "--max-length", "32"]
    result = CliRunner().invoke(cli, [*args, "--rate", "1e-4", "--rate", "1e-3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["curves"]) == {"0.0001", "0.001"} and report["chosen"] in (1e-4, 1e-3)
    assert report["stage_rates"]["distil"] == pytest.approx(25 * report["chosen"])
    assert f"--set training.retrain.lr={report['chosen']:g}" in report["sweep_settings"]
