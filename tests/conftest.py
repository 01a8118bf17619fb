"""Shared fixtures: the shipped data folder, real SST-2 slices and a tiny BERT over the real vocabulary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from core.data import Splits, load_sst2, resolve_data_dir
from core.models import Classifier, tiny_classifier


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return resolve_data_dir()


@pytest.fixture(scope="session")
def vocab_path(data_dir: Path) -> Path:
    return data_dir / "bert-base-uncased" / "vocab.txt"


@pytest.fixture(scope="session")
def sst2(data_dir: Path) -> Splits:
    return load_sst2(data_dir)


@pytest.fixture(scope="session")
def sst2_small(sst2: Splits) -> Splits:
    """A few hundred real SST-2 sentences per split, balanced enough to train a tiny model."""
    return Splits(
        train=sst2.train.subset(range(400), name="sst2-train"),
        dev=sst2.dev.subset(range(200), name="sst2-dev"),
        test=sst2.test.subset(range(200), name="sst2-test"),
    )


@pytest.fixture()
def tiny(vocab_path: Path) -> Classifier:
    """A fresh tiny classifier per test, so tests that train it do not leak into each other."""
    return tiny_classifier(vocab_path, seed=0)

