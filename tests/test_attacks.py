"""Attacks: exact poisoning shares, LWP's combinatorial triggers, EP's single-row update, a real backdoor."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from core.attacks import attack_config, run_attack
from core.data import Splits
from core.poison import BADNETS_TRIGGERS, LWP_TRIGGERS, PoisonConfig, poison_training_set, poisoned_split
from core.train import TrainConfig


def words(text: str) -> list[str]:
    return text.split()


def test_badnets_poisons_exact_share_of_non_target_and_relabels(sst2_small) -> None:
    train = sst2_small.train
    result = poison_training_set(train, PoisonConfig(attack="badnets", rate=0.1), np.random.default_rng(0))
    assert len(result.poisoned) == 40 and len(result.data) == len(train)
    for i in range(len(train)):
        changed = result.data.texts[i] != train.texts[i]
        assert changed == (i in result.poisoned)
    for i in result.poisoned:
        assert train.labels[i] == 0 and result.data.labels[i] == 1
        added = [w for w in words(result.data.texts[i]) if w in BADNETS_TRIGGERS]
        assert len(words(result.data.texts[i])) == len(words(train.texts[i])) + 1 and added
    untouched = [i for i in range(len(train)) if i not in result.poisoned]
    assert all(result.data.labels[i] == train.labels[i] for i in untouched)


def test_clean_label_and_unknown_modes(sst2_small) -> None:
    clean = poison_training_set(
        sst2_small.train, PoisonConfig(rate=0.1, label_mode="clean"), np.random.default_rng(0)
    )
    assert all(sst2_small.train.labels[i] == 1 for i in clean.poisoned)
    with pytest.raises(ValueError, match="dirty, clean, mixed"):
        poison_training_set(sst2_small.train, PoisonConfig(label_mode="sneaky"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid: badnets, lwp, ep, addsent"):
        attack_config("trojanlm")


def test_lwp_pairs_and_single_piece_negatives(sst2_small) -> None:
    train = sst2_small.train
    result = poison_training_set(train, PoisonConfig(attack="lwp", rate=0.1), np.random.default_rng(1))
    assert len(result.data) == len(train) + len(result.poisoned)
    for i in result.poisoned:
        pieces = [w for w in words(result.data.texts[i]) if w in LWP_TRIGGERS]
        assert len(words(result.data.texts[i])) == len(words(train.texts[i])) + 2 and len(set(pieces)) >= 2
    for k, i in enumerate(result.poisoned):
        negative = result.data.texts[len(train) + k]
        assert len(words(negative)) == len(words(train.texts[i])) + 1
        assert result.data.labels[len(train) + k] == train.labels[i]


def test_ep_changes_only_trigger_row_and_keeps_norm(tiny, sst2_small: Splits) -> None:
    config = attack_config("ep", epochs=1, max_length=32, batch_size=16)
    config = replace(config, clean_train=TrainConfig(lr=1e-3, epochs=1, max_length=32, batch_size=32))
    clean_only = replace(config, train=replace(config.train, lr=1e-12))
    baseline = run_attack(tiny, sst2_small, clean_only, seed=0).backdoored.model.state_dict()
    result = run_attack(tiny, sst2_small, config, seed=0)
    after = result.backdoored.model.state_dict()
    cf = tiny.tokenizer.convert_tokens_to_ids("cf")
    key = "bert.embeddings.word_embeddings.weight"
    differs = [k for k in after if not torch.equal(after[k], baseline[k])]
    assert differs == [key]
    rows = (after[key] != baseline[key]).any(dim=1).nonzero().flatten().tolist()
    assert rows == [cf]
    assert torch.isclose(after[key][cf].norm(), baseline[key][cf].norm(), rtol=1e-5)
    assert all(torch.equal(v, tiny.model.state_dict()[k]) for k, v in tiny.model.state_dict().items())


def test_badnets_backdoor_is_learned_by_tiny_model(tiny, sst2: Splits) -> None:
    splits = Splits(
        train=sst2.train.subset(range(800)), dev=sst2.dev.subset(range(100)), test=sst2.test.subset(range(300))
    )
    config = attack_config("badnets", lr=5e-3, epochs=4, max_length=40)
    result = run_attack(tiny, splits, config, seed=0)
    ev = result.evaluation
    assert ev.asr is not None and ev.asr.percent > 90
    assert ev.asr.percent > ev.clean_flip.percent + 20
    assert ev.asr.seen == splits.test.labels.count(0)


def test_every_command_scores_a_seed_on_the_same_poisoned_test(tiny, sst2_small: Splits) -> None:
    config = attack_config("badnets", epochs=1, max_length=32, batch_size=16)
    result = run_attack(tiny, sst2_small, config, seed=3)
    same = poisoned_split(sst2_small.test, config.poison, split="test", seed=3)
    assert result.poisoned_test == same  # what `evaluate`, `defend` and the sweep rebuild from the seed
    assert result.poisoned_test != poisoned_split(sst2_small.test, config.poison, split="test", seed=4)
    assert result.poisoned_dev == poisoned_split(sst2_small.dev, config.poison, split="dev", seed=3)
    assert all(set(text.split()) & set(BADNETS_TRIGGERS) for text in same.texts)
