"""Retraining on augmented clean data (step 1 of Algorithm 1): TS-FT, and Table III's other augmentations.

D_a holds N augmented copies of every D_c sample, each with its sample's label (|D_a| = N |D_c|).
The suspect is fine-tuned on D_a with cross-entropy; the epoch kept is the best on clean dev.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from core.augment import COUNT_MODES, augment_dataset, get_augmentation
from core.data import TextDataset
from core.defenses.base import Defense, DefenseInputs
from core.defenses.cft import RETRAIN, EpochCallback, StepCallback, clean_finetune
from core.models import Classifier
from core.train import TrainConfig

Augment = Callable[[str, np.random.Generator], str]


@dataclass(frozen=True)
class AugFtConfig:
    """Retraining-on-D_a settings; the defaults are TS-FT's."""

    augmentation: str = "ts"  # a name in core.augment.AUGMENTATIONS: ts, eda, aeda, cwea, add_trig
    copies: int = 3  # N augmented texts per clean sample (Sec. III-B1)
    ts_count: str = "nlpaug"  # TS only: nlpaug's min(10, ceil(0.3 n)) or the paper's max(10, 0.3 n) words split
    train: TrainConfig = RETRAIN  # lr 2e-5 (Sec. IV-A5), 3 epochs, clean-dev selection

    def __post_init__(self) -> None:
        get_augmentation(self.augmentation)  # an unknown name fails here, listing the valid ones
        if self.copies < 1:
            raise ValueError(f"copies must be at least 1, got {self.copies}")
        if self.ts_count not in COUNT_MODES:
            raise ValueError(f"unknown ts_count {self.ts_count!r}; valid: {', '.join(COUNT_MODES)}")


def resolve_augment(config: AugFtConfig, augment: Augment | None = None) -> Augment:
    """The `(text, rng) -> text` function to build D_a with: `augment` if given, else the named one."""
    if augment is not None:
        return augment
    if config.augmentation == "cwea":
        raise ValueError("cwea needs a masked LM: pass augment=functools.partial(core.augment.cwea, masked_lm=...)")
    function = get_augmentation(config.augmentation)
    return partial(function, count=config.ts_count) if config.augmentation == "ts" else function


def augmented_set(
    clean: TextDataset, config: AugFtConfig, *, seed: int, augment: Augment | None = None
) -> TextDataset:
    """D_a: `config.copies` augmented copies of each clean sample, drawn from a Generator seeded with `seed`."""
    return augment_dataset(
        clean,
        resolve_augment(config, augment),
        copies=config.copies,
        rng=np.random.default_rng(seed),
        name=f"{clean.name}-{config.augmentation}",
    )


def aug_ft(
    inputs: DefenseInputs,
    config: AugFtConfig,
    *,
    augment: Augment | None = None,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Classifier:
    """Retrain a copy of the suspect on D_a (TS-FT with the defaults); `augment` overrides the named augmentation."""
    data = augmented_set(inputs.clean, config, seed=inputs.seed, augment=augment)
    return clean_finetune(
        inputs.suspect, data, inputs.dev, train_config=config.train, seed=inputs.seed,
        on_step=on_step, on_epoch=on_epoch,
    )


DEFENSE = Defense(name="ts-ft", kind="mitigation", run=aug_ft, config_type=AugFtConfig)
