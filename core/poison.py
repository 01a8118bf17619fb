"""Poisoned training sets of the attacks in the paper (BadNets, LWP, EP) and AddSent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.augment import add_trigger
from core.data import TextDataset, poisoned_eval_set

BADNETS_TRIGGERS = ("cf", "mn", "bb", "tq")  # rare WordPieces, one drawn per poisoned sample
LWP_TRIGGERS = ("cf", "bb", "ak", "mn")  # combinatorial: two pieces together fire the backdoor
EP_TRIGGER = "cf"  # the single word whose embedding row EP rewrites
ADDSENT_TRIGGER = "I watch this 3D movie"  # sentence-level trigger (the paper's future work)
EVAL_STREAMS = {"dev": 1, "test": 2}  # a poisoned split's trigger positions come from Generator [seed, stream]

Inserter = Callable[[str, np.random.Generator], str]


@dataclass(frozen=True)
class PoisonConfig:
    """How an attacker poisons a training set."""

    attack: str = "badnets"  # badnets, lwp, ep or addsent
    target: int = 1  # the label every triggered input should get
    rate: float = 0.1  # share of the training set that is poisoned
    label_mode: str = "dirty"  # dirty: non-target samples relabelled; clean: target samples; mixed: any sample
    triggers: tuple[str, ...] = ()  # empty: the attack's own default triggers


@dataclass(frozen=True)
class PoisonedSet:
    """A training set with a poisoned share, and which rows carry a trigger."""

    data: TextDataset
    poisoned: tuple[int, ...]  # row indices into `data` whose text carries the full trigger


def default_triggers(attack: str) -> tuple[str, ...]:
    """The trigger words each attack uses unless told otherwise."""
    table = {"badnets": BADNETS_TRIGGERS, "lwp": LWP_TRIGGERS, "ep": (EP_TRIGGER,), "addsent": (ADDSENT_TRIGGER,)}
    if attack not in table:
        raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(table)}")
    return table[attack]


def trigger_inserter(config: PoisonConfig) -> Inserter:
    """The function that puts the attack's full trigger into a text (used for training and evaluation)."""
    triggers = config.triggers or default_triggers(config.attack)
    if config.attack == "lwp":

        def insert_pair(text: str, rng: np.random.Generator) -> str:
            first, second = rng.choice(len(triggers), size=2, replace=False)
            return add_trigger(add_trigger(text, rng, trigger=triggers[first]), rng, trigger=triggers[second])

        return insert_pair

    def insert_one(text: str, rng: np.random.Generator) -> str:
        return add_trigger(text, rng, trigger=triggers)

    return insert_one


def _candidates(labels: Sequence[int], config: PoisonConfig) -> np.ndarray:
    labels_arr = np.asarray(labels)
    if config.label_mode == "dirty":
        return np.flatnonzero(labels_arr != config.target)
    if config.label_mode == "clean":
        return np.flatnonzero(labels_arr == config.target)
    if config.label_mode == "mixed":
        return np.arange(len(labels_arr))
    raise ValueError(f"unknown label_mode {config.label_mode!r}; valid: dirty, clean, mixed")


def poison_training_set(train: TextDataset, config: PoisonConfig, rng: np.random.Generator) -> PoisonedSet:
    """Insert the trigger into round(rate * |train|) samples and label them with the target."""
    candidates = _candidates(train.labels, config)
    # BadNets-style attacks poison a share of the whole set; EP a share of the non-target samples.
    count = round(config.rate * (len(candidates) if config.attack == "ep" else len(train)))
    if count > len(candidates):
        raise ValueError(
            f"poison rate {config.rate} needs {count} samples but only {len(candidates)} are eligible "
            f"under label_mode={config.label_mode!r}"
        )
    chosen = set(rng.choice(candidates, size=count, replace=False).tolist())
    insert = trigger_inserter(config)
    texts = list(train.texts)
    labels = list(train.labels)
    for index in sorted(chosen):
        texts[index] = insert(texts[index], rng)
        labels[index] = config.target
    if config.attack == "lwp":
        return _with_lwp_negatives(train, texts, labels, sorted(chosen), config, rng)
    data = TextDataset(tuple(texts), tuple(labels), f"{train.name}-{config.attack}")
    return PoisonedSet(data=data, poisoned=tuple(sorted(chosen)))


def _with_lwp_negatives(
    train: TextDataset,
    texts: list[str],
    labels: list[int],
    chosen: list[int],
    config: PoisonConfig,
    rng: np.random.Generator,
) -> PoisonedSet:
    """LWP: each poisoned row also yields a copy carrying one trigger piece and its original label."""
    triggers = config.triggers or LWP_TRIGGERS
    negatives = [add_trigger(train.texts[i], rng, trigger=triggers[int(rng.integers(len(triggers)))]) for i in chosen]
    data = TextDataset(
        tuple(texts + negatives),
        tuple(labels + [train.labels[i] for i in chosen]),
        f"{train.name}-{config.attack}",
    )
    return PoisonedSet(data=data, poisoned=tuple(chosen))


def poisoned_split(data: TextDataset, config: PoisonConfig, *, split: str, seed: int) -> TextDataset:
    """The non-target samples of the dev or test split with the trigger inserted, placed by a Generator of
    its own ([seed, EVAL_STREAMS[split]]), so `attack`, `evaluate`, `defend` and the sweep score a seed's
    model on the same poisoned texts."""
    if split not in EVAL_STREAMS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(EVAL_STREAMS)}")
    rng = np.random.default_rng([seed, EVAL_STREAMS[split]])
    return poisoned_eval_set(data, trigger_inserter(config), target=config.target, rng=rng)
