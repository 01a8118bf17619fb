"""CACC, ASR, clean flip, FRR and FAR on hand-made cases, as counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import (
    Counts,
    attack_success_rate,
    clean_accuracy,
    clean_flip_rate,
    false_acceptance_rate,
    false_rejection_rate,
)


def test_counts_percent_addition_and_validation() -> None:
    assert Counts(hits=1, seen=3).percent == pytest.approx(100 / 3)
    assert Counts(hits=1, seen=3) + Counts(hits=2, seen=5) == Counts(hits=3, seen=8)
    assert math.isnan(Counts(hits=0, seen=0).percent)
    with pytest.raises(ValueError):
        Counts(hits=4, seen=3)


def test_clean_accuracy_with_and_without_a_detector() -> None:
    predictions, labels = [1, 0, 1, 1], [1, 1, 1, 0]
    assert clean_accuracy(predictions=predictions, labels=labels) == Counts(hits=2, seen=4)
    # a rejected clean sample is an error even when its prediction was right
    flagged = [True, False, False, True]
    assert clean_accuracy(predictions=predictions, labels=labels, flagged=flagged) == Counts(hits=1, seen=4)


def test_attack_success_rate_counts_only_non_target_samples() -> None:
    labels = np.array([0, 0, 1, 0, 2])  # original labels of the triggered samples
    predictions = np.array([1, 0, 1, 1, 1])
    assert attack_success_rate(predictions=predictions, labels=labels, target=1) == Counts(hits=3, seen=4)
    # a flagged poisoned sample is a failed attack
    flagged = np.array([False, False, False, True, False])
    counts = attack_success_rate(predictions=predictions, labels=labels, target=1, flagged=flagged)
    assert counts == Counts(hits=2, seen=4)
    assert counts.percent == 50.0


def test_clean_flip_is_the_target_share_of_clean_non_target_samples() -> None:
    labels = [0, 0, 0, 1, 1]
    predictions = [1, 0, 0, 1, 0]
    assert clean_flip_rate(predictions=predictions, labels=labels, target=1) == Counts(hits=1, seen=3)
    assert clean_flip_rate(predictions=predictions, labels=labels, target=0) == Counts(hits=1, seen=2)


def test_false_rejection_and_acceptance_rates() -> None:
    assert false_rejection_rate(flagged_clean=[True, False, False, False]) == Counts(hits=1, seen=4)
    assert false_acceptance_rate(flagged_poisoned=np.array([True, True, False])) == Counts(hits=1, seen=3)
    assert false_acceptance_rate(flagged_poisoned=[]) == Counts(hits=0, seen=0)


def test_inputs_must_be_one_dimensional_and_of_one_length() -> None:
    with pytest.raises(ValueError, match="shapes"):
        clean_accuracy(predictions=[1, 0], labels=[1, 0, 1])
    with pytest.raises(ValueError, match="shapes"):
        attack_success_rate(predictions=[1, 0], labels=[0, 0], target=1, flagged=[True])
    with pytest.raises(ValueError, match="shapes"):
        clean_accuracy(predictions=np.zeros((2, 2)), labels=np.zeros((2, 2)))
