"""Poisoned training sets of the attacks in the paper (BadNets, LWP, EP) and AddSent, and the defender's own
backdoor that `tune --objective proxy` plants into M_b to tune against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.augment import ADD_TRIG_WORD, add_trigger
from core.data import TextDataset, poisoned_eval_set

BADNETS_TRIGGERS = ("cf", "mn", "bb", "tq")  # rare WordPieces, one drawn per poisoned sample
LWP_TRIGGERS = ("cf", "bb", "ak", "mn")  # combinatorial: two pieces together fire the backdoor
EP_TRIGGER = "cf"  # the single word whose embedding row EP rewrites
ADDSENT_TRIGGER = "I watch this 3D movie"  # sentence-level trigger (the paper's future work)
EVAL_STREAMS = {"dev": 1, "test": 2}  # a poisoned split's trigger positions come from Generator [seed, stream]
# The defender's own trigger: rare WordPieces in none of the attacks' sets (nor Add Trig's), one drawn per sample.
DEFENDER_TRIGGERS = ("dq", "jj", "qb", "rq")

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


ATTACK_TRIGGERS = {"badnets": BADNETS_TRIGGERS, "lwp": LWP_TRIGGERS, "ep": (EP_TRIGGER,), "addsent": (ADDSENT_TRIGGER,)}


def default_triggers(attack: str) -> tuple[str, ...]:
    """The trigger words each attack uses unless told otherwise."""
    if attack not in ATTACK_TRIGGERS:
        raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(ATTACK_TRIGGERS)}")
    return ATTACK_TRIGGERS[attack]


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


# ------------------------------------------------------------------------------------- the defender's backdoor


def attack_trigger_words() -> frozenset[str]:
    """Every word of every attack's default trigger and Add Trig's: what a defender's own trigger must avoid."""
    words = {word.lower() for triggers in ATTACK_TRIGGERS.values() for trigger in triggers for word in trigger.split()}
    return frozenset(words | {ADD_TRIG_WORD})


@dataclass(frozen=True)
class ProxyBackdoor:
    """A BadNets backdoor of the defender's choosing, planted into a copy of M_b on D_c: its words, the share of
    D_c it poisons and its target label (the defender's, not the attacker's `spec.target`)."""

    triggers: tuple[str, ...] = DEFENDER_TRIGGERS
    rate: float = 0.1  # share of D_c poisoned (non-target samples, relabelled)
    target: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "triggers", tuple(self.triggers))  # a JSON list from a Ray config
        if not self.triggers or not all(isinstance(word, str) and word.strip() for word in self.triggers):
            raise ValueError(f"the defender's trigger needs at least one non-empty word, got {self.triggers!r}")
        if taken := sorted({w.lower() for t in self.triggers for w in t.split()} & attack_trigger_words()):
            raise ValueError(
                f"the defender's trigger {list(self.triggers)} uses {taken}, which an attack or Add Trig inserts; "
                f"choose words outside {sorted(attack_trigger_words())}"
            )
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"the defender's poison rate must lie in (0, 1), got {self.rate}")

    def poison_config(self) -> PoisonConfig:
        """The backdoor as a BadNets poisoning (dirty labels, one word per sample)."""
        return PoisonConfig(attack="badnets", target=self.target, rate=self.rate, triggers=self.triggers)
