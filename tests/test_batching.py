"""Length-grouped training batches: each sample once per epoch, seeded, and little padding on real SST-2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertTokenizerFast

from core.batching import MEGA_BATCHES, batches, token_lengths, training_order
from core.data import Splits, TextDataset


@pytest.fixture(scope="module")
def tokenizer(vocab_path: Path) -> BertTokenizerFast:
    return BertTokenizerFast(vocab=str(vocab_path))


def orders(lengths: list[int], seed: int, *, group_by_length: bool, epochs: int = 1) -> list[list[list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        training_order(lengths, batch_size=8, generator=generator, group_by_length=group_by_length)
        for _ in range(epochs)
    ]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_every_sample_once_per_epoch_and_seeded(group_by_length: bool) -> None:
    lengths = np.random.default_rng(0).integers(3, 60, size=1000).tolist()  # 1000 = 2 mega-batches of 400 + 200
    first, second = orders(lengths, 0, group_by_length=group_by_length, epochs=2)
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(1000))
        assert len(epoch) == 125 and all(len(batch) == 8 for batch in epoch)
    assert first != second  # the generator moves on between epochs
    assert orders(lengths, 0, group_by_length=group_by_length, epochs=2) == [first, second]
    assert orders(lengths, 1, group_by_length=group_by_length) != [first]


def test_grouped_batches_are_sorted_within_mega_batches_and_start_with_the_longest() -> None:
    lengths = np.random.default_rng(1).integers(3, 60, size=1003).tolist()
    (epoch,) = orders(lengths, 2, group_by_length=True)
    assert max(lengths[i] for i in epoch[0]) == max(lengths)
    assert [len(batch) for batch in epoch].count(3) == 1 and sum(len(batch) for batch in epoch) == 1003
    for batch in epoch:
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    spread = np.mean([lengths[b[0]] - lengths[b[-1]] for b in epoch])
    assert spread < 5  # neighbours in a sorted mega-batch of 400 are close; random batches of 8 spread ~40
    (plain,) = orders(lengths, 2, group_by_length=False)
    assert np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plain]) > 20
    # the batch order is shuffled again: consecutive batches do not walk down one mega-batch in order
    assert MEGA_BATCHES == 50
    firsts = [lengths[b[0]] for b in epoch[1:51]]
    assert firsts != sorted(firsts, reverse=True)


def test_sst2_training_batches_pad_little_when_grouped(sst2: Splits, tokenizer: BertTokenizerFast) -> None:
    train = sst2.train
    text_tokens = sum(token_lengths(tokenizer, train.texts, max_length=48))

    def padded(group_by_length: bool) -> tuple[int, int, int]:
        examples, real, padded_tokens = 0, 0, 0
        for batch in batches(
            tokenizer,
            train,
            batch_size=32,
            max_length=48,
            generator=torch.Generator().manual_seed(0),
            group_by_length=group_by_length,
        ):
            assert batch.inputs["input_ids"].shape[1] <= 48
            examples += len(batch.labels)
            real += int(batch.attention_mask.sum())
            padded_tokens += batch.inputs["input_ids"].numel()
        return examples, real, padded_tokens

    examples, real, grouped = padded(True)
    assert (examples, real) == (len(train), text_tokens)
    assert grouped <= 1.1 * text_tokens, grouped / text_tokens
    _, _, random = padded(False)
    assert random > 1.5 * text_tokens, random / text_tokens  # what grouping saves
    print(f"padded / text tokens: grouped {grouped / text_tokens:.3f}, random {random / text_tokens:.3f}")


def test_in_order_batches_without_a_generator(tokenizer: BertTokenizerFast) -> None:
    data = TextDataset(texts=("a b c", "a", "a b c d e", "a b"), labels=(0, 1, 0, 1))
    got = list(batches(tokenizer, data, batch_size=3, max_length=16, group_by_length=True))
    assert [b.labels.tolist() for b in got] == [[0, 1, 0], [1]]
    assert [b.attention_mask.sum(dim=1).tolist() for b in got] == [[5, 3, 7], [4]]
