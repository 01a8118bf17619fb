"""The paper's setting as settings: OpenBackdoor's attack profile (schedules, label rule, EP's row steps) and
training until clean dev stops improving."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.attacks import attack_config
from core.data import Splits
from core.models import Classifier
from core.poison import poison_training_set
from core.train import TrainConfig, cross_entropy_term, fit
from orchestration.presets import smoke
from orchestration.spec import Cell, apply_settings, attack_setup, defense_setup
from orchestration.trial import trial_id


def _lrs(tiny: Classifier, sst2_small: Splits, config: TrainConfig) -> list[float]:
    steps: list[float] = []
    fit(
        tiny.model,
        tiny.tokenizer,
        sst2_small.train.subset(range(64)),
        config=config,
        terms=(cross_entropy_term(),),
        on_step=lambda report: steps.append(report.values["lr"]),
    )
    return steps


def test_openbackdoors_schedule_never_passes_two_thirds_of_the_peak(tiny: Classifier, sst2_small: Splits) -> None:
    peak = 1e-3
    config = TrainConfig(lr=peak, epochs=2, batch_size=16, warmup_epochs=3, weight_decay=0.0, bf16=False)
    lrs = _lrs(tiny, sst2_small, config)  # 4 steps an epoch: warm-up over 12 steps, 8 of them trained
    assert len(lrs) == 8 and lrs == sorted(lrs) and lrs[0] == 0.0
    assert lrs[-1] == pytest.approx(peak * 7 / 12) and max(lrs) < peak * 2 / 3
    default = _lrs(tiny, sst2_small, dataclasses.replace(config, warmup_epochs=None))
    assert max(default) == pytest.approx(peak) and default[-1] < default[1]  # warm-up, then decay to 0


def test_a_constant_sgd_run_takes_plain_gradient_steps(tiny: Classifier, sst2_small: Splits) -> None:
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=64, schedule="constant", optimizer="sgd", max_grad_norm=None)
    before = tiny.model.classifier.weight.detach().clone()
    grads: list[torch.Tensor] = []
    hook = tiny.model.classifier.weight.register_post_accumulate_grad_hook(lambda p: grads.append(p.grad.clone()))
    lrs = _lrs(tiny, sst2_small, dataclasses.replace(config, bf16=False))
    hook.remove()
    assert lrs == [1e-2]
    assert torch.allclose(tiny.model.classifier.weight, before - 1e-2 * grads[0], atol=1e-7)
    with pytest.raises(ValueError, match="optimizer 'adam'"):
        TrainConfig(lr=1e-3, epochs=1, optimizer="adam")


def test_patience_stops_when_the_score_stops_improving(tiny: Classifier, sst2_small: Splits) -> None:
    scripted = iter([0.5, 0.9, 0.8, 0.7, 0.95, 0.99])
    result = fit(
        tiny.model,
        tiny.tokenizer,
        sst2_small.train.subset(range(32)),
        config=TrainConfig(lr=1e-3, epochs=6, batch_size=16, bf16=False, patience=2),
        terms=(cross_entropy_term(),),
        score=lambda model: next(scripted),
    )
    assert [record.score for record in result.history] == [0.5, 0.9, 0.8, 0.7]  # two epochs without a gain
    assert result.best_epoch == 2
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(lr=1e-3, epochs=1, patience=0)


def test_the_openbackdoor_profile_poisons_any_sample_and_trains_gently(sst2_small: Splits) -> None:
    badnets = attack_config("badnets", "openbackdoor")
    assert badnets.poison.label_mode == "mixed" and badnets.train.weight_decay == 0.0
    assert (badnets.train.epochs, badnets.train.warmup_epochs) == (2, 3)
    poisoned = poison_training_set(sst2_small.train, badnets.poison, np.random.default_rng(0))
    original = [sst2_small.train.labels[i] for i in poisoned.poisoned]
    assert 1 in original and 0 in original  # target-class samples are poisoned too
    ep = attack_config("ep", "openbackdoor")
    assert (ep.train.optimizer, ep.train.schedule, ep.train.lr, ep.train.epochs) == ("sgd", "constant", 1e-2, 5)
    assert attack_config("badnets").poison.label_mode == "dirty"  # the project's own profile is unchanged
    with pytest.raises(ValueError, match="unknown attack profile 'paper'"):
        attack_config("badnets", "paper")


def test_a_sweep_takes_the_profile_the_models_rates_and_patience_for_every_defence() -> None:
    settings = {
        "attack_profile": "openbackdoor",
        "training.attack.lr": 1e-4,
        "training.retrain.lr": 1e-4,
        "training.retrain.patience": 2,
        "training.retrain.epochs": 10,
        "training.distil.patience": 2,
        "training.distil.lr": 2.5e-3,
    }
    spec = apply_settings(smoke(), settings)
    ep = attack_setup(spec, "ep")
    assert ep.clean_train.lr == 1e-4 and ep.clean_train.warmup_epochs == 3 and ep.train.lr == 1e-2
    assert attack_setup(spec, "badnets").poison.label_mode == "mixed"
    mbtsad = defense_setup(spec, Cell("sst2", "badnets", "mbtsad", "ts", 0))
    assert (mbtsad.teacher.train.patience, mbtsad.teacher.train.epochs, mbtsad.train.patience) == (2, 10, 2)
    assert mbtsad.train.lr == 2.5e-3
    for defense in ("cft", "fine-mixing", "fine-purifying", "reinit", "fine-pruning"):
        config = defense_setup(spec, Cell("sst2", "badnets", defense, None, 0))
        trains = _train_configs(config)
        assert trains and all(t.patience == 2 and t.lr == 1e-4 for t in trains), defense
    with pytest.raises(ValueError, match="attack profile"):
        apply_settings(smoke(), {"attack_profile": "paper"})


def test_one_setting_turns_length_grouping_off_everywhere_and_the_default_keeps_the_keys() -> None:
    spec = apply_settings(smoke(), {"training.group_by_length": False})
    configs = [attack_setup(spec, attack) for attack in ("badnets", "lwp", "ep")]
    configs += [defense_setup(spec, Cell("sst2", "badnets", d, None, 0)) for d in ("cft", "fine-purifying", "rap")]
    configs += [defense_setup(spec, Cell("sst2", "badnets", "mbtsad", "ts", 0))]
    trains = [t for config in configs for t in _train_configs(config)]
    assert len(trains) >= 8 and not any(t.group_by_length for t in trains)
    default = smoke()
    assert all(t.group_by_length for t in _train_configs(attack_setup(default, "ep")))
    cell = Cell("sst2", "badnets", "mbtsad", "ts", 0)
    explicit = apply_settings(default, {"training.group_by_length": True})
    assert trial_id(explicit, cell) == trial_id(default, cell) != trial_id(spec, cell)


def _train_configs(config: object) -> list[TrainConfig]:
    if isinstance(config, TrainConfig):
        return [config]
    if not dataclasses.is_dataclass(config):
        return []
    return [t for f in dataclasses.fields(config) for t in _train_configs(getattr(config, f.name))]
