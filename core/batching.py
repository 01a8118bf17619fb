"""Tokenised batches with dynamic padding, and batched prediction in eval mode without gradients.

Training batches are grouped by length by default (the idea of `transformers.Trainer`'s `group_by_length`):
a seeded shuffle is cut into mega-batches of `MEGA_BATCHES` batches, each sorted by token length and cut
into batches, and the batches are shuffled again with the longest first, so memory peaks at the first step.
On SST-2 (length 48, batch 32) a batch then pads to 1.02x its texts' mean length instead of 1.9x.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from core.data import TextDataset

MEGA_BATCHES = 50  # batches per length-sorted mega-batch, as in transformers.Trainer's group_by_length


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


def training_order(
    lengths: Sequence[int], *, batch_size: int, generator: torch.Generator, group_by_length: bool
) -> list[list[int]]:
    """One epoch's batches of row indices: a seeded shuffle, or length-grouped batches longest first (module doc)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    size = MEGA_BATCHES * batch_size  # a multiple of batch_size: only the last mega-batch leaves a short batch
    grouped: list[list[int]] = []
    for start in range(0, len(order), size):
        mega = sorted(order[start : start + size], key=lambda i: lengths[i], reverse=True)  # stable: ties stay random
        grouped.extend(mega[first : first + batch_size] for first in range(0, len(mega), batch_size))
    shuffled = [grouped[i] for i in torch.randperm(len(grouped), generator=generator).tolist()]
    longest = max(range(len(shuffled)), key=lambda b: lengths[shuffled[b][0]])  # each batch is sorted, longest first
    shuffled.insert(0, shuffled.pop(longest))
    return shuffled


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, max_length: int) -> list[int]:
    """Each text's token count after truncation to `max_length`, special tokens included."""
    return [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]


def batches(
    tokenizer: PreTrainedTokenizerBase,
    data: TextDataset,
    *,
    batch_size: int,
    max_length: int,
    generator: torch.Generator | None = None,
    group_by_length: bool = False,
) -> Iterator[Batch]:
    """Batches padded to their own longest text; in order without `generator`, else `training_order`'s batches.

    The texts are tokenised once, up front, and each batch only padded: a fast tokenizer's own thread pool,
    woken at every batch, would compete with torch's threads for the cores.
    """
    encoded = tokenizer(list(data.texts), truncation=True, max_length=max_length)
    if generator is None:
        rows_of = [list(range(start, min(start + batch_size, len(data)))) for start in range(0, len(data), batch_size)]
    else:
        lengths = [len(ids) for ids in encoded["input_ids"]]
        rows_of = training_order(lengths, batch_size=batch_size, generator=generator, group_by_length=group_by_length)
    for rows in rows_of:
        padded = tokenizer.pad(
            [{key: values[i] for key, values in encoded.items()} for i in rows], padding="longest", return_tensors="pt"
        )
        yield Batch(inputs=dict(padded), labels=torch.tensor([data.labels[i] for i in rows]))


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
