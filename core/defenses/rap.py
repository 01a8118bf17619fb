"""RAP (Yang et al., EMNLP 2021): robustness-aware perturbations, as OpenBackdoor and the RAP code run it.

A rare word is put at the front of every input, and its embedding row alone is trained on clean dev
samples of the target class so that it lowers their target probability by between 0.1 and 0.3. A
backdoor trigger holds the target probability near 1 whatever else is in the input, so a triggered
input's probability barely drops: inputs predicted as the target whose drop is below a threshold
(the clean dev drop at the configured FRR) are flagged. Inputs predicted otherwise are never flagged:
the backdoor did not fire on them.

The word: OpenBackdoor and the RAP code default to "cf", but "cf" is a BadNets, LWP and EP trigger in
this project, so the default is "mb", the second word of the RAP code's own two-word example, a
single WordPiece in BERT's uncased vocabulary and in no attack's trigger set.

The row is trained with the project's one training loop (`core.train.fit`) and EP's row update
(only that row moves, then it is rescaled to its original norm), with dropout switched off in the
working copy: the RAP code constructs the perturbation with the model in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from core.batching import predict_proba
from core.data import TextDataset
from core.defenses.base import Defense, DefenseInputs
from core.models import Classifier
from core.train import (
    LossTerm,
    StepContext,
    TrainConfig,
    bf16_supported,
    embedding_row_update,
    fit,
)

RAP_WORD = "mb"  # see the module docstring for why not OpenBackdoor's "cf"
# OpenBackdoor's RAP defaults (configs/rap_config.json): 5 epochs, batch 32, lr 1e-2. The RAP code
# takes plain gradient steps on the row; here AdamW moves it (as EP's row update does) with neither
# warm-up nor weight decay, and no clipping.
RAP_TRAIN = TrainConfig(lr=1e-2, epochs=5, batch_size=32, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=None)


@dataclass(frozen=True)
class RapConfig:
    """RAP settings: OpenBackdoor's defaults except the word."""

    word: str = RAP_WORD  # the perturbation word, inserted first; must be one token of the suspect's vocabulary
    target: int = 1  # the protected (backdoor target) label; SPEC's default target
    drop_low: float = 0.1  # the lower bound of the target-probability drop the row is trained into
    drop_high: float = 0.3  # the upper bound of that drop
    scale: float = 1.0  # weight of the lower-bound hinge (RAP's lambda) against the upper one
    frr: float = 0.01  # false-rejection rate allowed on clean dev; sets the threshold
    train: TrainConfig = RAP_TRAIN  # how the row is trained; seed comes from the inputs

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_low < self.drop_high <= 1.0 or not 0.0 <= self.frr < 1.0:
            raise ValueError(f"RAP needs 0 <= drop_low < drop_high <= 1 and 0 <= frr < 1: {self}")


def word_token_id(classifier: Classifier, word: str) -> int:
    """The vocabulary id of `word`, which must tokenise to exactly one known token."""
    ids = classifier.tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == classifier.tokenizer.unk_token_id:
        raise ValueError(f"RAP word {word!r} is not a single known token of this tokenizer (ids {ids})")
    return int(ids[0])


def insert_word(texts: Sequence[str], word: str) -> list[str]:
    """Each text with `word` put in front, as RAP does."""
    return [f"{word} {text}" for text in texts]


def rap_loss(*, drop: torch.Tensor, low: float, high: float, scale: float) -> torch.Tensor:
    """RAP's hinge loss: push each target-probability drop into [low, high]."""
    return scale * torch.relu(low - drop).mean() + torch.relu(drop - high).mean()


def rap_term(*, token_id: int, config: RapConfig) -> LossTerm:
    """The RAP loss as a training-loop term; the batch holds texts with the word at token position 1."""

    def loss(ctx: StepContext) -> torch.Tensor:
        ids = ctx.batch.inputs["input_ids"]
        if not bool((ids[:, 1] == token_id).all()):
            raise ValueError("RAP: the perturbation word is not the first token of every input")
        original = {name: torch.cat([value[:, :1], value[:, 2:]], dim=1) for name, value in ctx.batch.inputs.items()}
        p_original = ctx.model(**original).logits.float().softmax(dim=-1)[:, config.target]
        p_inserted = ctx.outputs.logits.float().softmax(dim=-1)[:, config.target]
        return rap_loss(drop=p_original - p_inserted, low=config.drop_low, high=config.drop_high, scale=config.scale)

    return LossTerm("rap", 1.0, loss)


def _without_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def train_rap_word(classifier: Classifier, construct: TextDataset, *, config: RapConfig, seed: int) -> Classifier:
    """A copy of the suspect whose RAP word row is trained on `construct`; every other weight unchanged."""
    token_id = word_token_id(classifier, config.word)
    model = _without_dropout(copy.deepcopy(classifier.model))
    inserted = TextDataset(tuple(insert_word(construct.texts, config.word)), construct.labels, "rap-construct")
    fit(
        model,
        classifier.tokenizer,
        inserted,
        config=replace(config.train, seed=seed),
        terms=(rap_term(token_id=token_id, config=config),),
        update=embedding_row_update(model, token_ids=(token_id,)),
    )
    return Classifier(model=model.eval(), tokenizer=classifier.tokenizer)


def probabilities_with_word(
    classifier: Classifier, texts: Sequence[str], *, config: RapConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of the texts as given and with the RAP word in front."""
    model, tokenizer, train = classifier.model, classifier.tokenizer, config.train
    bf16 = bf16_supported(next(model.parameters()).device) if train.bf16 is None else train.bf16
    options = {"batch_size": train.eval_batch_size, "max_length": train.max_length, "bf16": bf16}
    original = predict_proba(model, tokenizer, list(texts), **options)
    inserted = predict_proba(model, tokenizer, insert_word(texts, config.word), **options)
    return original, inserted


@dataclass(frozen=True)
class RapDetector:
    """A calibrated RAP detector over the copy that holds the learned row."""

    classifier: Classifier  # the suspect's copy with the trained RAP row
    threshold: float  # target-probability drop below which a target-predicted input is flagged
    config: RapConfig

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Target-probability drop when the RAP word is inserted: small means suspect."""
        original, inserted = probabilities_with_word(self.classifier, texts, config=self.config)
        return original[:, self.config.target] - inserted[:, self.config.target]

    def flag(self, texts: Sequence[str]) -> np.ndarray:
        """True where an input is predicted as the target and its drop falls below the threshold."""
        original, inserted = probabilities_with_word(self.classifier, texts, config=self.config)
        drop = original[:, self.config.target] - inserted[:, self.config.target]
        return (original.argmax(axis=1) == self.config.target) & (drop < self.threshold)


def rap(inputs: DefenseInputs, config: RapConfig) -> RapDetector:
    """RAP: train the word's row on clean dev target-class samples; threshold their drops at the FRR."""
    construct = inputs.dev.subset([i for i, label in enumerate(inputs.dev.labels) if label == config.target])
    if not len(construct):
        raise ValueError(f"RAP: clean dev has no samples of the target label {config.target}")
    trained = train_rap_word(inputs.suspect, construct, config=config, seed=inputs.seed)
    original, inserted = probabilities_with_word(trained, construct.texts, config=config)
    predicted = original.argmax(axis=1) == config.target  # RAP calibrates on the samples it could reject
    if not predicted.any():
        raise ValueError(f"RAP: the suspect predicts none of the clean dev target-label samples as {config.target}")
    drops = original[predicted, config.target] - inserted[predicted, config.target]
    return RapDetector(trained, float(np.percentile(drops, 100 * config.frr)), config)


DEFENSE = Defense(name="rap", kind="detection", run=rap, config_type=RapConfig)
