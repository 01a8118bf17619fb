"""The model's counterpart of the paper's learning rates: the paper's rates are BERT-base's, and a smaller
model such as MiniLM needs larger ones for the paper's baselines to behave as the paper's do (SPEC, "Second look").

The rule, reproducible from its seed: fine-tune the pre-trained model on clean training data at each
candidate rate for a fixed number of epochs and keep the rate whose best clean dev accuracy is highest
(a tie within `tolerance` points goes to the smaller rate). That rate stands for the paper's 2e-5 (the
attack's and the retraining rate); distillation runs at the paper's ratio, 5e-4 / 2e-5 = 25 times it.
Only clean data is read: no poisoned sample decides a rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from core.data import TextDataset
from core.defenses.cft import clean_finetune
from core.models import Classifier
from core.train import EpochRecord, StepReport, TrainConfig

PAPER_RETRAIN_LR = 2e-5  # the paper's retraining rate (BERT-base), also OpenBackdoor's attack rate
PAPER_DISTIL_LR = 5e-4  # the paper's distillation rate
DISTIL_RATIO = PAPER_DISTIL_LR / PAPER_RETRAIN_LR  # 25


@dataclass(frozen=True)
class RateSearch:
    """The candidate rates and the fine-tuning each is scored with."""

    rates: tuple[float, ...] = (2e-5, 5e-5, 1e-4, 2e-4, 4e-4)  # from the paper's rate up, roughly doubling
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=PAPER_RETRAIN_LR, epochs=2))
    tolerance: float = 0.2  # points of dev accuracy within which the smaller rate wins

    def __post_init__(self) -> None:
        if not self.rates or any(rate <= 0 for rate in self.rates):
            raise ValueError(f"rates must be a non-empty list of positive numbers, got {self.rates}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class RateCurve:
    """Clean dev accuracy (percent) after each epoch of fine-tuning at one rate."""

    lr: float
    dev_accuracy: tuple[float, ...]

    @property
    def best(self) -> float:
        return max(self.dev_accuracy)


def rate_curve(
    pretrained: Classifier,
    train: TextDataset,
    dev: TextDataset,
    config: TrainConfig,
    *,
    seed: int,
    on_step: Callable[[StepReport], None] | None = None,
) -> RateCurve:
    """Clean dev accuracy after each epoch of cross-entropy fine-tuning of a copy of `pretrained` at `config.lr`."""
    records: list[EpochRecord] = []
    clean_finetune(pretrained, train, dev, train_config=config, seed=seed, on_step=on_step, on_epoch=records.append)
    return RateCurve(lr=config.lr, dev_accuracy=tuple(record.dev.percent for record in records if record.dev))


def choose_rate(curves: Sequence[RateCurve], *, tolerance: float) -> float:
    """The smallest rate whose best dev accuracy is within `tolerance` points of the highest."""
    top = max(curve.best for curve in curves)
    return min(curve.lr for curve in curves if curve.best >= top - tolerance)


def stage_rates(base: float) -> Mapping[str, float]:
    """The rates of the sweep's stages from the model's counterpart of 2e-5, at the paper's ratios."""
    return {"attack": base, "retrain": base, "distil": DISTIL_RATIO * base}
