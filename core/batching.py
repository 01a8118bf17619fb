"""Tokenised batches with dynamic padding, and batched prediction in eval mode without gradients."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from core.data import TextDataset


@dataclass(frozen=True)
class Batch:
    """A tokenised batch: the model's keyword inputs and the labels."""

    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask (and token_type_ids for BERT)
    labels: torch.Tensor

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.inputs["attention_mask"]

    def to(self, device: torch.device) -> Batch:
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device))


def batches(
    tokenizer: PreTrainedTokenizerBase,
    data: TextDataset,
    *,
    batch_size: int,
    max_length: int,
    generator: torch.Generator | None = None,
) -> Iterator[Batch]:
    """Batches padded to their own longest text; shuffled with `generator`, in order without it."""
    order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        rows = order[start : start + batch_size].tolist()
        encoded = tokenizer(
            [data.texts[i] for i in rows],
            padding="longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        yield Batch(inputs=dict(encoded), labels=torch.tensor([data.labels[i] for i in rows]))


def predict_proba(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 128,
    max_length: int = 128,
    bf16: bool = False,
) -> np.ndarray:
    """Class probabilities [n, labels] in eval mode without gradients; texts batched by length."""
    device = next(model.parameters()).device
    order = np.argsort([len(text) for text in texts], kind="stable")  # similar lengths pad less
    probabilities = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            encoded = tokenizer(
                [texts[i] for i in rows],
                padding="longest",
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            probabilities[rows] = model(**encoded).logits.float().softmax(dim=-1).cpu().numpy()
    model.train(was_training)
    return probabilities


def predict(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 128,
    max_length: int = 128,
    bf16: bool = False,
) -> np.ndarray:
    """Predicted labels for `texts` (the argmax of `predict_proba`)."""
    probabilities = predict_proba(model, tokenizer, texts, batch_size=batch_size, max_length=max_length, bf16=bf16)
    return probabilities.argmax(axis=1)
