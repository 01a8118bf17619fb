"""CACC, ASR and the clean-flip floor of a classifier, with or without a detection defence in front."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.batching import predict
from core.data import TextDataset, non_target
from core.defenses.base import Detector
from core.metrics import (
    Counts,
    attack_success_rate,
    clean_accuracy,
    clean_flip_rate,
    false_acceptance_rate,
    false_rejection_rate,
)
from core.models import Classifier


@dataclass(frozen=True)
class Evaluation:
    """Counts on the clean test set and its poisoned non-target copy; FRR/FAR only behind a detector."""

    cacc: Counts
    asr: Counts | None  # None when no trigger is known
    clean_flip: Counts  # clean non-target samples predicted as the target: the floor of ASR
    frr: Counts | None = None
    far: Counts | None = None

    def percents(self) -> dict[str, float | None]:
        """Every metric in percent, for reports and result rows."""
        return {
            name: None if counts is None else round(counts.percent, 2)
            for name, counts in (
                ("cacc", self.cacc),
                ("asr", self.asr),
                ("clean_flip", self.clean_flip),
                ("frr", self.frr),
                ("far", self.far),
            )
        }


def evaluate(
    classifier: Classifier,
    *,
    test: TextDataset,
    poisoned_test: TextDataset | None,
    target: int,
    detector: Detector | None = None,
    batch_size: int = 128,
    max_length: int = 128,
) -> Evaluation:
    """Score a model on clean and triggered test inputs; a detector's rejections count against it."""

    def run(data: TextDataset) -> tuple[np.ndarray, np.ndarray | None]:
        predictions = predict(
            classifier.model, classifier.tokenizer, data.texts, batch_size=batch_size, max_length=max_length
        )
        return predictions, None if detector is None else detector.flag(data.texts)

    predictions, flagged = run(test)
    cacc = clean_accuracy(predictions=predictions, labels=test.labels, flagged=flagged)
    victims = np.asarray(test.labels) != target
    clean_flip = clean_flip_rate(
        predictions=predictions[victims],
        labels=np.asarray(test.labels)[victims],
        target=target,
        flagged=None if flagged is None else flagged[victims],
    )
    if poisoned_test is None:
        return Evaluation(cacc=cacc, asr=None, clean_flip=clean_flip)
    if len(non_target(poisoned_test, target)) != len(poisoned_test):
        raise ValueError("the poisoned test set must hold only non-target samples (see core.data.poisoned_eval_set)")
    poisoned_predictions, poisoned_flagged = run(poisoned_test)
    asr = attack_success_rate(
        predictions=poisoned_predictions, labels=poisoned_test.labels, target=target, flagged=poisoned_flagged
    )
    if detector is None:
        return Evaluation(cacc=cacc, asr=asr, clean_flip=clean_flip)
    return Evaluation(
        cacc=cacc,
        asr=asr,
        clean_flip=clean_flip,
        frr=false_rejection_rate(flagged_clean=flagged),
        far=false_acceptance_rate(flagged_poisoned=poisoned_flagged),
    )
