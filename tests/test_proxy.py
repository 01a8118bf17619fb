"""The proxy objective's backdoor: the defender's words avoid every attack's, the planted backdoor takes on a tiny
model, and the proxy scores read nothing of the attacker's trigger (a real store, no Ray)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from core.data import TextDataset
from core.models import tiny_classifier
from core.poison import BADNETS_TRIGGERS, DEFENDER_TRIGGERS, ProxyBackdoor, attack_trigger_words
from orchestration.artifacts import Backdoored, defender_clean, load_data, proxy_backdoored
from orchestration.presets import smoke
from orchestration.proxy import proxy_scores
from orchestration.spec import Cell, SweepSpec, apply_settings, defense_setup
from orchestration.uri_store import Store, open_store

CPU = torch.device("cpu")


def fresh_suspect(vocab_path: Path, seed: int = 0) -> Backdoored:
    """A tiny model standing in for M_b: the proxy reads only its weights and key."""
    return Backdoored(classifier=tiny_classifier(vocab_path, seed=seed), key=f"tiny-{seed}", scores={}, poisoned={})


def test_the_defenders_trigger_avoids_every_attacks_words() -> None:
    assert not set(DEFENDER_TRIGGERS) & attack_trigger_words()
    assert {"cf", "mn", "bb", "tq", "ak", "cb", "movie"} <= attack_trigger_words()  # all attacks', Add Trig's
    for taken in (("cf",), ("dq", "CB"), ("watch this",)):
        with pytest.raises(ValueError, match="which an attack or Add Trig inserts"):
            ProxyBackdoor(triggers=taken)
    with pytest.raises(ValueError, match="poison rate"):
        ProxyBackdoor(rate=0.0)
    with pytest.raises(ValueError, match="at least one non-empty word"):
        ProxyBackdoor(triggers=())
    poison = ProxyBackdoor(triggers=["jj"], rate=0.3, target=1).poison_config()  # a JSON list, as Ray passes it
    assert (poison.attack, poison.triggers, poison.rate, poison.target, poison.label_mode) == (
        "badnets",
        ("jj",),
        0.3,
        1,
        "dirty",
    )


@pytest.fixture(scope="module")
def planting(vocab_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepSpec, Store]:
    """A spec whose D_c (800 sentences) and retraining settings (a model trained from scratch needs large rates) let
    a tiny model learn the defender's backdoor, and a store shared by the module's tests."""
    settings = {
        "data.max_train": 4000,
        "data.max_dev": 200,
        "training.retrain.lr": 5e-3,
        "training.retrain.epochs": 4,
        "training.distil.epochs": 1,
        "defense_settings.mbtsad.teacher.copies": 1,  # MBTSAD's teacher and student: one epoch on D_c's size
        "defense_settings.mbtsad.teacher.train.epochs": 1,
    }
    return apply_settings(smoke(), settings), open_store(str(tmp_path_factory.mktemp("proxy") / "store"))


def test_the_proxy_backdoor_takes_on_a_tiny_model(vocab_path: Path, planting: tuple[SweepSpec, Store]) -> None:
    spec, store = planting
    splits = load_data(spec, "sst2")
    clean = defender_clean(spec, splits, 0)
    train = defense_setup(spec, Cell("sst2", "badnets", "cft", None, 0)).train
    proxy = ProxyBackdoor(rate=0.2)  # a fifth of D_c carries one of the defender's words
    planted = proxy_backdoored(store, spec, fresh_suspect(vocab_path), proxy, train, clean, splits.dev, 0, CPU)
    scores = planted.scores["dev"]
    assert scores["asr"] >= 90 and scores["asr"] >= scores["clean_flip"] + 20, scores
    poisoned = planted.poisoned["dev"]
    assert len(poisoned) == splits.dev.labels.count(1)  # the non-target samples for the defender's target 0
    assert all(set(text.split()) & set(DEFENDER_TRIGGERS) for text in poisoned.texts)
    assert not any(set(text.split()) & set(BADNETS_TRIGGERS) for text in poisoned.texts)
    again = proxy_backdoored(store, spec, fresh_suspect(vocab_path), proxy, train, clean, splits.dev, 0, CPU)
    assert again.key == planted.key and again.scores == planted.scores  # read from the store


def test_the_proxy_scores_read_nothing_of_the_attackers_trigger(
    vocab_path: Path, planting: tuple[SweepSpec, Store]
) -> None:
    spec, store = planting
    cell = Cell("sst2", "badnets", "mbtsad", "ts", 0, alpha=1.0, beta=0.5)
    proxy = ProxyBackdoor(rate=0.2)
    suspect = fresh_suspect(vocab_path)
    scores = proxy_scores(spec, cell, proxy, suspect, store=store, device=CPU)
    assert scores["reference_asr"] >= 90  # the planted model of the test above, from the store
    assert 0 < scores["cacc"] < 100 and scores["asr"] is not None
    # Another attacker's trigger, target and poisoned sets around the same suspect weights: the same scores.
    other = apply_settings(spec, {"target": 0, "attack_settings.badnets.poison.triggers": ["zq"]})
    junk = TextDataset(("zq zq",), (0,), "junk")
    disguised = dataclasses.replace(suspect, poisoned={"dev": junk, "test": junk}, scores={"dev": {"asr": 1.0}})
    assert proxy_scores(other, cell, proxy, disguised, store=store, device=CPU) == scores
