"""CACC, ASR, the clean-flip floor, FRR and FAR as counts; percentages are made where tables are made.

Inputs are 1-D sequences or numpy arrays (a CPU tensor works too). Detection defences (STRIP, RAP)
pass `flagged`, a boolean per sample: a flagged clean sample is a CACC error, and a flagged
poisoned sample is a failed attack, as the paper scores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ArrayLike = Sequence[int] | Sequence[bool] | np.ndarray


@dataclass(frozen=True)
class Counts:
    """`hits` out of `seen` samples; counts add exactly across shards, unlike ratios."""

    hits: int
    seen: int

    def __post_init__(self) -> None:
        if not 0 <= self.hits <= self.seen:
            raise ValueError(f"hits must lie in 0..seen, got {self.hits} of {self.seen}")

    def __add__(self, other: Counts) -> Counts:
        return Counts(hits=self.hits + other.hits, seen=self.seen + other.seen)

    @property
    def percent(self) -> float:
        """100 hits / seen; NaN when nothing was seen, so an empty set never reads as 0% or 100%."""
        return 100.0 * self.hits / self.seen if self.seen else float("nan")


def _vectors(**named: ArrayLike | None) -> dict[str, np.ndarray]:
    """The given arrays as 1-D numpy vectors of one common length, checked; None entries are dropped."""
    arrays = {name: np.asarray(value) for name, value in named.items() if value is not None}
    shapes = {name: array.shape for name, array in arrays.items()}
    if any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) > 1:
        raise ValueError(f"expected 1-D arrays of one length, got shapes {shapes}")
    return arrays


def _accepted(vectors: dict[str, np.ndarray]) -> np.ndarray:
    """True where a detector let the sample through (everywhere when there is no detector)."""
    flagged = vectors.get("flagged")
    return np.ones(len(vectors["labels"]), dtype=bool) if flagged is None else ~flagged.astype(bool)


def clean_accuracy(*, predictions: ArrayLike, labels: ArrayLike, flagged: ArrayLike | None = None) -> Counts:
    """CACC: clean samples predicted correctly and not flagged, out of all clean samples."""
    v = _vectors(predictions=predictions, labels=labels, flagged=flagged)
    hits = (v["predictions"] == v["labels"]) & _accepted(v)
    return Counts(hits=int(hits.sum()), seen=len(hits))


def attack_success_rate(
    *, predictions: ArrayLike, labels: ArrayLike, target: int, flagged: ArrayLike | None = None
) -> Counts:
    """ASR: triggered samples whose original label is not the target, predicted as the target and not flagged."""
    v = _vectors(predictions=predictions, labels=labels, flagged=flagged)
    counted = v["labels"] != target
    hits = (v["predictions"] == target) & _accepted(v) & counted
    return Counts(hits=int(hits.sum()), seen=int(counted.sum()))


def clean_flip_rate(
    *, predictions: ArrayLike, labels: ArrayLike, target: int, flagged: ArrayLike | None = None
) -> Counts:
    """The ASR floor: clean (untriggered) non-target samples predicted as the target and not flagged."""
    return attack_success_rate(predictions=predictions, labels=labels, target=target, flagged=flagged)


def false_rejection_rate(*, flagged_clean: ArrayLike) -> Counts:
    """FRR: clean samples a detector flags, out of all clean samples."""
    flags = _vectors(flagged_clean=flagged_clean)["flagged_clean"].astype(bool)
    return Counts(hits=int(flags.sum()), seen=len(flags))


def false_acceptance_rate(*, flagged_poisoned: ArrayLike) -> Counts:
    """FAR: poisoned samples a detector lets through unflagged, out of all poisoned samples."""
    flags = _vectors(flagged_poisoned=flagged_poisoned)["flagged_poisoned"].astype(bool)
    return Counts(hits=int((~flags).sum()), seen=len(flags))
