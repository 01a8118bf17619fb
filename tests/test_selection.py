"""Eq. 9: mean cross-entropy per batch of 16, its argmax, and [CLS] vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.augment import token_split
from core.data import TextDataset
from core.selection import cls_vectors, mean_cross_entropy, most_perturbing


def test_mean_cross_entropy_is_the_mean_of_batch_means(tiny, sst2_small) -> None:
    data = sst2_small.dev.subset(range(40))
    value = mean_cross_entropy(tiny.model, tiny.tokenizer, data, batch_size=16)
    direct = []
    for start in (0, 16, 32):
        batch = tiny.tokenizer(list(data.texts[start : start + 16]), padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = tiny.model.eval()(**batch).logits
        direct.append(torch.nn.functional.cross_entropy(logits, torch.tensor(data.labels[start : start + 16])).item())
    assert value == pytest.approx(np.mean(direct), rel=1e-5)
    split = TextDataset(tuple(token_split(t, np.random.default_rng(0)) for t in data.texts), data.labels)
    assert mean_cross_entropy(tiny.model, tiny.tokenizer, split) != pytest.approx(value, abs=1e-6)


def test_argmax_and_empty_inputs() -> None:
    assert most_perturbing({"ts": 0.53, "eda": 0.31, "aeda": 0.29}) == "ts"
    with pytest.raises(ValueError, match="no augmentation"):
        most_perturbing({})
    with pytest.raises(ValueError, match="no samples"):
        mean_cross_entropy(None, None, TextDataset((), (), "empty"))


def test_cls_vectors_shape_and_order(tiny, sst2_small) -> None:
    texts = sst2_small.dev.texts[:10]
    all_at_once = cls_vectors(tiny.model, tiny.tokenizer, texts, batch_size=64)
    in_pieces = cls_vectors(tiny.model, tiny.tokenizer, texts, batch_size=3)
    assert all_at_once.shape == (10, tiny.model.config.hidden_size)
    assert np.allclose(all_at_once, in_pieces, atol=1e-5)
