"""Augmentation selection (eq. 9): which augmentation most perturbs the backdoored model's predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from core.batching import batches
from core.data import TextDataset

CE_BATCH = 16  # Fig. 3 averages the cross-entropy over batches of 16


def mean_cross_entropy(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: TextDataset,
    *,
    batch_size: int = CE_BATCH,
    max_length: int = 128,
) -> float:
    """The inner expectation of eq. 9: the model's mean per-batch cross-entropy on (augmented) data."""
    if len(data) == 0:
        raise ValueError(f"{data.name}: no samples to score")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses = []
    with torch.inference_mode():
        for batch in batches(tokenizer, data, batch_size=batch_size, max_length=max_length):
            batch = batch.to(device)
            losses.append(nn.functional.cross_entropy(model(**batch.inputs).logits.float(), batch.labels).item())
    model.train(was_training)
    return float(np.mean(losses))


def most_perturbing(scores: dict[str, float]) -> str:
    """The argmax of eq. 9 over the augmentation set B (ties: the first listed)."""
    if not scores:
        raise ValueError("no augmentation scores to choose from")
    return max(scores, key=scores.__getitem__)


def cls_vectors(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> np.ndarray:
    """The last layer's [CLS] state of each text, [n, hidden] (the vectors Fig. 3 projects with t-SNE)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    unlabelled = TextDataset(tuple(texts), (0,) * len(texts), "cls")
    rows = []
    with torch.inference_mode():
        for batch in batches(tokenizer, unlabelled, batch_size=batch_size, max_length=max_length):
            hidden = model(**batch.to(device).inputs, output_hidden_states=True).hidden_states[-1]
            rows.append(hidden[:, 0].float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(rows) if rows else np.zeros((0, model.config.hidden_size), dtype=np.float32)
