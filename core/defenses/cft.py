"""CFT: fine-tune the suspect model on the defender's clean data D_c, selecting on clean dev accuracy.

`clean_finetune` is also the last step of Reinitialization, Fine-Pruning, Fine-Mixing and
Fine-Purifying: each prepares a model its own way and hands it here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from torch import nn

from core.data import TextDataset
from core.defenses.base import Defense, DefenseInputs
from core.models import Classifier
from core.train import EpochRecord, StepReport, TrainConfig, cross_entropy_term, fit

StepCallback = Callable[[StepReport], None]
EpochCallback = Callable[[EpochRecord], None]
Diagnose = Callable[[nn.Module], Mapping[str, float | None]]  # per-epoch measurements recorded, never selecting

# The paper's retraining rate (Sec. IV-A5). It gives no epoch count; 3 is what SPEC's MiniLM
# prototype used for CFT and TS-FT, and the epoch kept is the one with the best clean dev accuracy.
RETRAIN = TrainConfig(lr=2e-5, epochs=3)


@dataclass(frozen=True)
class CftConfig:
    """Clean fine-tuning settings."""

    train: TrainConfig = RETRAIN  # lr 2e-5, batch 32, AdamW with linear warm-up and decay; seed comes from the inputs


def clean_finetune(
    classifier: Classifier,
    clean: TextDataset,
    dev: TextDataset,
    *,
    train_config: TrainConfig,
    seed: int,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    diagnose: Diagnose | None = None,
) -> Classifier:
    """Cross-entropy fine-tuning of a copy of `classifier` on `clean`, keeping the epoch best on clean `dev`."""
    model = copy.deepcopy(classifier.model)  # forward hooks and their buffers travel with the copy
    fit(
        model,
        classifier.tokenizer,
        clean,
        config=replace(train_config, seed=seed),
        terms=(cross_entropy_term(),),
        dev=dev,
        on_step=on_step,
        on_epoch=on_epoch,
        diagnose=diagnose,
    )
    return Classifier(model=model, tokenizer=classifier.tokenizer)


def cft(
    inputs: DefenseInputs,
    config: CftConfig,
    *,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Classifier:
    """CFT (Table II): the suspect fine-tuned on D_c; the suspect itself is left untouched."""
    return clean_finetune(
        inputs.suspect,
        inputs.clean,
        inputs.dev,
        train_config=config.train,
        seed=inputs.seed,
        on_step=on_step,
        on_epoch=on_epoch,
    )


DEFENSE = Defense(name="cft", kind="mitigation", run=cft, config_type=CftConfig)
