"""The attacker's side: build a backdoored model M_b with BadNets, LWP, EP or AddSent."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from torch import nn
from transformers import PreTrainedTokenizerBase

from core.batching import predict
from core.data import Splits, TextDataset
from core.evaluate import Evaluation, evaluate
from core.metrics import attack_success_rate, clean_accuracy
from core.models import Classifier
from core.poison import EP_TRIGGER, PoisonConfig, PoisonedSet, poison_training_set, poisoned_split
from core.train import (
    EpochRecord,
    StepReport,
    TrainConfig,
    cross_entropy_term,
    embedding_row_update,
    fit,
    layerwise_term,
)


@dataclass(frozen=True)
class AttackConfig:
    """One attack: how the data is poisoned and how the backdoor is trained in."""

    poison: PoisonConfig = field(default_factory=PoisonConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-5, epochs=3))  # the backdoor training
    clean_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-5, epochs=3))  # EP: the clean model


ATTACKS: dict[str, AttackConfig] = {
    "badnets": AttackConfig(poison=PoisonConfig(attack="badnets")),
    "lwp": AttackConfig(poison=PoisonConfig(attack="lwp")),
    "ep": AttackConfig(poison=PoisonConfig(attack="ep"), train=TrainConfig(lr=5e-2, epochs=3)),
    "addsent": AttackConfig(poison=PoisonConfig(attack="addsent")),
}


# OpenBackdoor's attack settings (thunlp/OpenBackdoor configs/*_config.json and its trainers), which the paper
# follows: no weight decay; BadNets and EP's clean model train 2 epochs under a schedule that warms up over 3
# epochs and decays over 5, so the rate never passes 2/3 of its peak; LWP trains 5 epochs without warm-up;
# BadNets' and LWP's poisoned 10% is drawn from the whole training set (label_consistency and label_dirty both
# false: target-class samples included); EP's row takes plain gradient steps at 1e-2 for 5 epochs and is
# rescaled to its norm after each. The rates are BERT-base's; a sweep sets the model's own (core/rates.py).
_GENTLE = TrainConfig(lr=2e-5, epochs=2, warmup_epochs=3, weight_decay=0.0)
OPENBACKDOOR: dict[str, AttackConfig] = {
    "badnets": AttackConfig(poison=PoisonConfig(attack="badnets", label_mode="mixed"), train=_GENTLE),
    "lwp": AttackConfig(
        poison=PoisonConfig(attack="lwp", label_mode="mixed"),
        train=TrainConfig(lr=2e-5, epochs=5, warmup_ratio=0.0, weight_decay=0.0),
    ),
    "ep": AttackConfig(
        poison=PoisonConfig(attack="ep"),
        train=TrainConfig(
            lr=1e-2, epochs=5, schedule="constant", optimizer="sgd", weight_decay=0.0, max_grad_norm=None
        ),
        clean_train=_GENTLE,
    ),
    "addsent": AttackConfig(poison=PoisonConfig(attack="addsent", label_mode="mixed"), train=_GENTLE),
}
ATTACK_PROFILES: dict[str, dict[str, AttackConfig]] = {"project": ATTACKS, "openbackdoor": OPENBACKDOOR}


def attack_config(name: str, profile: str = "project", **train_overrides: object) -> AttackConfig:
    """The named attack's settings under `profile` (project: this project's; openbackdoor: the paper's setting),
    with optional overrides of its backdoor-training settings."""
    if profile not in ATTACK_PROFILES:
        raise ValueError(f"unknown attack profile {profile!r}; valid: {', '.join(ATTACK_PROFILES)}")
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    config = ATTACK_PROFILES[profile][name]
    return replace(config, train=replace(config.train, **train_overrides)) if train_overrides else config


def word_token_ids(tokenizer: PreTrainedTokenizerBase, word: str) -> tuple[int, ...]:
    """The vocabulary ids `word` takes in a text, first and after a space: one id in WordPiece, two in byte-level
    BPE (RoBERTa's `cf` and `Ġcf`); each form must be a single known token."""
    ids = []
    for form in (word, f" {word}"):
        pieces = tokenizer(form, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            raise ValueError(f"trigger {form!r} is not a single known token of this tokenizer (ids {pieces})")
        ids.append(int(pieces[0]))
    return tuple(dict.fromkeys(ids))


@dataclass(frozen=True)
class AttackResult:
    """The backdoored model M_b, its test scores, the poisoned training set it learned from, and the poisoned
    dev (checkpoint selection) and test (scores) sets."""

    backdoored: Classifier
    evaluation: Evaluation
    poisoned_train: PoisonedSet
    poisoned_dev: TextDataset
    poisoned_test: TextDataset


def _attacker_score(
    classifier: Classifier, dev: TextDataset, poisoned_dev: TextDataset, config: AttackConfig
) -> Callable[[nn.Module], float]:
    """Checkpoint score of the attacker, who holds poisoned dev data: clean dev accuracy plus dev ASR."""
    length = config.train.max_length

    def score(model: nn.Module) -> float:
        clean = predict(model, classifier.tokenizer, dev.texts, max_length=length)
        triggered = predict(model, classifier.tokenizer, poisoned_dev.texts, max_length=length)
        return (
            clean_accuracy(predictions=clean, labels=dev.labels).percent
            + attack_success_rate(
                predictions=triggered, labels=poisoned_dev.labels, target=config.poison.target
            ).percent
        )

    return score


def run_attack(
    classifier: Classifier,
    splits: Splits,
    config: AttackConfig,
    *,
    seed: int,
    on_step: Callable[[StepReport], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> AttackResult:
    """Poison the training set, train the backdoor into a copy of `classifier`, and score it on test."""
    rng = np.random.default_rng(seed)
    poison = config.poison
    poisoned = poison_training_set(splits.train, poison, rng)
    poisoned_dev = poisoned_split(splits.dev, poison, split="dev", seed=seed)
    poisoned_test = poisoned_split(splits.test, poison, split="test", seed=seed)
    model = copy.deepcopy(classifier.model)
    victim = Classifier(model=model, tokenizer=classifier.tokenizer)
    train = replace(config.train, seed=seed)
    score = _attacker_score(victim, splits.dev, poisoned_dev, config)
    hooks = {"on_step": on_step, "on_epoch": on_epoch}
    if poison.attack == "ep":
        clean = replace(config.clean_train, seed=seed)
        fit(model, victim.tokenizer, splits.train, config=clean, terms=(cross_entropy_term(),), dev=splits.dev, **hooks)
        token_ids = word_token_ids(victim.tokenizer, EP_TRIGGER)
        fit(
            model,
            victim.tokenizer,
            poisoned.data.subset(poisoned.poisoned),
            config=train,
            terms=(cross_entropy_term(),),
            update=embedding_row_update(model, token_ids=token_ids),
            score=score,
            **hooks,
        )
    else:
        terms = (layerwise_term(),) if poison.attack == "lwp" else (cross_entropy_term(),)
        fit(model, victim.tokenizer, poisoned.data, config=train, terms=terms, score=score, **hooks)
    evaluation = evaluate(
        victim, test=splits.test, poisoned_test=poisoned_test, target=poison.target, max_length=train.max_length
    )
    return AttackResult(
        backdoored=victim,
        evaluation=evaluation,
        poisoned_train=poisoned,
        poisoned_dev=poisoned_dev,
        poisoned_test=poisoned_test,
    )
