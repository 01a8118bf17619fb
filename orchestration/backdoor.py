"""Building a backdoored model M_b into a folder (`cli.py attack`): the attack's settings, the data, the start
model pinned to its exact weights, and a card that records all of them beside the saved weights."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from core.attacks import attack_config, run_attack
from core.data import Splits, first_words, load_splits
from core.evaluate import Evaluation
from orchestration.hub import open_classifier, resolve_model
from orchestration.model_files import save_classifier
from orchestration.overrides import apply_overrides, with_training
from orchestration.progress import training_progress


@dataclass(frozen=True)
class BackdooredModel:
    """What `build_backdoored_model` saved: the card beside the weights and M_b's test scores."""

    folder: Path
    card: dict[str, Any]
    evaluation: Evaluation


def build_backdoored_model(
    out: Path,
    *,
    dataset: str = "sst2",
    attack: str = "badnets",
    model: str = "minilm",
    profile: str = "project",
    max_train: int | None = None,
    max_words: int | None = None,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
    overrides: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    console: Console | None = None,
) -> BackdooredModel:
    """Fine-tune `model` (tiny, minilm, a folder or a hub id) with `attack` on `dataset` and save M_b in `out`.

    `training` sets fields of every training run (epochs, lr, max_length); `overrides` are dotted settings
    of the attack's config (`poison.rate=0.2`). `max_train` keeps the first N training samples, `max_words`
    cuts every text to its first N words before poisoning. Progress is drawn on `console` (stderr).
    """
    config = apply_overrides(with_training(attack_config(attack, profile), **(training or {})), overrides or {})
    splits = load_splits(dataset, data_dir)
    if max_train:
        splits = replace(splits, train=splits.train.subset(range(min(max_train, len(splits.train)))))
    if max_words is not None:
        splits = Splits(*(first_words(part, max_words) for part in (splits.train, splits.dev, splits.test)))
    base_model = resolve_model(model)  # a hub id pinned to its commit, so the card names the exact weights
    classifier = open_classifier(base_model, seed=seed, data_dir=data_dir)
    started = time.perf_counter()
    with training_progress(console) as progress:
        progress.start(f"{attack} attack")
        result = run_attack(classifier, splits, config, seed=seed, on_step=progress.on_step, on_epoch=progress.on_epoch)
    card = {
        "attack": attack,
        "profile": profile,
        "poison": asdict(config.poison),
        "dataset": dataset,
        "max_train": max_train,
        "max_words": max_words,
        "seed": seed,
        "base_model": base_model,
        "scores": result.evaluation.percents(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    save_classifier(result.backdoored, out, card)
    return BackdooredModel(folder=out, card=card, evaluation=result.evaluation)
