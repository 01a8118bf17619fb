"""A sweep's shared work, built once per key in the artifact store: M_b, D_a, the TS-FT and the CFT teacher.

Each key holds everything that determines the artifact (model weights, data, settings, seed, and the
code: `orchestration.store.content_key` adds it), so a trial of another defence, a resumed sweep or the
`tune` command reads the same folder instead of training again, and other code builds its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.attacks import AttackConfig, run_attack
from core.augment import cwea, eda, load_wordnet
from core.data import Splits, TextDataset, clean_subset, first_words, load_splits, resolve_data_dir
from core.defenses.aug_ft import AugFtConfig, Augment, augmented_set
from core.defenses.cft import clean_finetune
from core.evaluate import evaluate
from core.models import (
    DEFAULT_ENCODER_SHA256,
    Classifier,
    TinyConfig,
    default_encoder_dir,
    load_classifier,
    sha256_of,
)
from core.poison import ProxyBackdoor
from core.train import TrainConfig
from orchestration.hub import fetch, hub_model, model_folder, open_classifier
from orchestration.masked_lm import cached_masked_lm
from orchestration.spec import SweepSpec, attack_setup
from orchestration.store import content_key, key_fields
from orchestration.uri_store import Store

# ------------------------------------------------------------------------------------- identities


@functools.cache
def _weights_digest(folder: str) -> str:
    """One sha256 over a model folder's weight files (hashed once per process)."""
    files = sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("pytorch_model.bin"))
    if not files:
        raise FileNotFoundError(f"model {folder}: no weights (*.safetensors or pytorch_model.bin)")
    return hashlib.sha256("".join(sha256_of(f) for f in files).encode()).hexdigest()


def model_identity(spec: SweepSpec) -> dict[str, Any]:
    """What the starting weights are: the tiny model's shape and vocabulary, a hub commit or a weights digest."""
    if spec.model == "tiny":
        vocab = resolve_data_dir(spec.data_dir) / "bert-base-uncased" / "vocab.txt"
        return {"model": "tiny", "config": key_fields(TinyConfig()), "vocab": sha256_of(vocab)}
    if spec.model == "minilm":
        return {"model": "minilm", "weights": DEFAULT_ENCODER_SHA256}
    if (hub := hub_model(spec.model)) is not None:  # a sweep's spec names the commit; another id resolves here
        return {"model": "hub", "repo": hub.repo, "commit": fetch(hub).name}
    return {"model": "folder", "weights": _weights_digest(spec.model)}


def start_model(spec: SweepSpec, seed: int) -> Classifier:
    """The model the attacker fine-tunes, which is also w_pre for Fine-Mixing and Fine-Purifying."""
    return open_classifier(spec.model, seed=seed, data_dir=spec.data_dir)


def dataset_digest(*sets: TextDataset) -> str:
    """The sha256 of every text and label, in order."""
    digest = hashlib.sha256()
    for data in sets:
        digest.update(json.dumps([data.texts, data.labels]).encode())
    return digest.hexdigest()


@functools.cache
def _splits(
    name: str, data_dir: str | None, sizes: tuple[int | None, int | None, int | None], max_words: int | None = None
) -> Splits:
    """A dataset cut to (train, dev, test) sizes, and each text to `max_words` words, cached per process
    (trial actors are reused)."""
    splits = load_splits(name, data_dir)
    wholes = (splits.train, splits.dev, splits.test)
    parts = [
        whole if size is None else whole.subset(range(min(size, len(whole))))
        for whole, size in zip(wholes, sizes, strict=True)
    ]
    for split, whole, part, size in zip(("train", "dev", "test"), wholes, parts, sizes, strict=True):
        if len(set(part.labels)) < len(set(whole.labels)):  # a file sorted by label, cut to its first rows
            raise ValueError(
                f"{name}: the first {size} {split} rows hold only label(s) {sorted(set(part.labels))} of "
                f"{sorted(set(whole.labels))}; shuffle the file, or raise data.max_{split}"
            )
    if max_words is not None:
        parts = [first_words(part, max_words) for part in parts]
    return Splits(*parts)


def load_data(spec: SweepSpec, dataset: str) -> Splits:
    """The dataset's splits cut to the spec's sizes and word counts (loaded once per process)."""
    data = spec.data
    return _splits(dataset, spec.data_dir, (data.max_train, data.max_dev, data.max_test), data.max_words)


def defender_clean(spec: SweepSpec, splits: Splits, seed: int) -> TextDataset:
    """D_c: the defender's stratified share of the clean training set, drawn with the run's seed."""
    return clean_subset(splits.train, spec.data.clean_fraction, np.random.default_rng(seed))


# ------------------------------------------------------------------------------------- dataset files


def write_dataset(path: Path, data: TextDataset) -> None:
    """A dataset as one JSON file, texts byte for byte (an augmented text may be empty or padded)."""
    path.write_text(json.dumps({"name": data.name, "texts": data.texts, "labels": data.labels}))


def read_dataset(path: Path) -> TextDataset:
    """A dataset `write_dataset` wrote."""
    raw = json.loads(path.read_text())
    return TextDataset(tuple(raw["texts"]), tuple(raw["labels"]), raw["name"])


def save_model(classifier: Classifier, folder: Path) -> None:
    """Safetensors weights and the tokenizer into an artifact folder."""
    classifier.model.save_pretrained(folder, safe_serialization=True)
    classifier.tokenizer.save_pretrained(folder)


def load_model(folder: Path, device: torch.device) -> Classifier:
    """A saved classifier, on `device`."""
    classifier = load_classifier(folder)
    classifier.model.to(device)
    return classifier


# ------------------------------------------------------------------------------------- M_b


@dataclass(frozen=True)
class Backdoored:
    """M_b with the evaluation sets every defence of its cell is scored on."""

    classifier: Classifier
    key: str  # the artifact's content key, part of every key built on M_b
    scores: dict[str, dict[str, float | None]]  # "test" and "dev": M_b's own percents (the `none` row)
    poisoned: dict[str, TextDataset]  # "test" and "dev": triggered non-target samples


def backdoored(store: Store, spec: SweepSpec, dataset: str, attack: str, seed: int, device: torch.device) -> Backdoored:
    """The backdoored model of (model, data, attack settings, seed), trained by the first trial that needs it."""
    splits = load_data(spec, dataset)
    config = attack_setup(spec, attack)
    fields = {
        "model": model_identity(spec),
        "data": dataset_digest(splits.train, splits.dev, splits.test),
        "attack": key_fields(config),
        "seed": seed,
    }

    def build(folder: Path) -> None:
        start = start_model(spec, seed)
        start.model.to(device)
        result = run_attack(start, splits, config, seed=seed)
        dev = evaluate(
            result.backdoored,
            test=splits.dev,
            poisoned_test=result.poisoned_dev,
            target=config.poison.target,
            max_length=spec.training.max_length,
        )
        save_model(result.backdoored, folder)
        write_dataset(folder / "poisoned_test.json", result.poisoned_test)
        write_dataset(folder / "poisoned_dev.json", result.poisoned_dev)
        scores = {"test": result.evaluation.percents(), "dev": dev.percents()}
        (folder / "scores.json").write_text(json.dumps(scores, indent=2))

    folder = store.get_or_build("backdoored", fields, build)
    return Backdoored(
        classifier=load_model(folder, device),
        key=content_key("backdoored", fields),
        scores=json.loads((folder / "scores.json").read_text()),
        poisoned={split: read_dataset(folder / f"poisoned_{split}.json") for split in ("test", "dev")},
    )


# ------------------------------------------------------------------------------------- D_a


def augment_function(
    store: Store, spec: SweepSpec, config: AugFtConfig, clean: TextDataset, seed: int
) -> Augment | None:
    """The augmentation with its resources bound: WordNet for EDA, the cached masked LM for CWEA; None for the
    others (core resolves them by name)."""
    if config.augmentation == "eda":
        return functools.partial(eda, wordnet=load_wordnet(spec.data_dir))
    if config.augmentation != "cwea":
        return None
    start = start_model(spec, seed)  # the pre-trained encoder (tiny: its seed-initialised weights)
    encoder = (
        start.model
        if spec.model == "tiny"
        else (default_encoder_dir() if spec.model == "minilm" else model_folder(spec.model))
    )
    masked_lm = cached_masked_lm(store, encoder, start.tokenizer, clean.texts, config=spec.mlm, seed=seed)
    return functools.partial(cwea, masked_lm=masked_lm)


def augmented(
    store: Store, spec: SweepSpec, config: AugFtConfig, clean: TextDataset, seed: int
) -> tuple[TextDataset, str]:
    """D_a and its content key: `config.copies` augmented copies of D_c, independent of the attack."""
    fields = {
        "clean": dataset_digest(clean),
        "augmentation": {k: v for k, v in key_fields(config).items() if k != "train"},
        "seed": seed,
        "mlm": key_fields(spec.mlm) if config.augmentation == "cwea" else None,
        "model": model_identity(spec) if config.augmentation == "cwea" else None,
    }

    def build(folder: Path) -> None:
        augment = augment_function(store, spec, config, clean, seed)
        write_dataset(folder / "data.json", augmented_set(clean, config, seed=seed, augment=augment))

    folder = store.get_or_build("augmented", fields, build)
    return read_dataset(folder / "data.json"), content_key("augmented", fields)


# ------------------------------------------------------------------------------------- TS-FT and CFT teachers


def retrained(
    store: Store,
    spec: SweepSpec,
    suspect: Backdoored,
    config: AugFtConfig,
    clean: TextDataset,
    dev: TextDataset,
    seed: int,
    device: torch.device,
) -> Classifier:
    """M_b retrained on D_a (TS-FT, the MBTSAD teacher M_p; Table III's other augmentations the same way)."""
    data, data_key = augmented(store, spec, config, clean, seed)
    return _finetuned(store, "retrained", suspect, data, data_key, config.train, dev, seed, device)


def clean_finetuned(
    store: Store,
    suspect: Backdoored,
    train: TrainConfig,
    clean: TextDataset,
    dev: TextDataset,
    seed: int,
    device: torch.device,
) -> Classifier:
    """M_b fine-tuned on D_c: the CFT row, and the teacher of NAD and MBTSAD-CFT-teacher (one model per M_b, seed)."""
    return _finetuned(store, "cft", suspect, clean, dataset_digest(clean), train, dev, seed, device)


def _finetuned(
    store: Store,
    kind: str,
    suspect: Backdoored,
    data: TextDataset,
    data_key: str,
    train: TrainConfig,
    dev: TextDataset,
    seed: int,
    device: torch.device,
) -> Classifier:
    """M_b fine-tuned on `data` (keyed by `data_key`) with cross-entropy, the epoch best on clean dev kept."""
    fields = {
        "suspect": suspect.key,
        "data": data_key,
        "train": key_fields(train),
        "dev": dataset_digest(dev),
        "seed": seed,
    }

    def build(folder: Path) -> None:
        save_model(clean_finetune(suspect.classifier, data, dev, train_config=train, seed=seed), folder)

    return load_model(store.get_or_build(kind, fields, build), device)


# ------------------------------------------------------------------------------------- the tuning proxy


def proxy_backdoored(
    store: Store,
    spec: SweepSpec,
    suspect: Backdoored,
    proxy: ProxyBackdoor,
    train: TrainConfig,
    clean: TextDataset,
    dev: TextDataset,
    seed: int,
    device: torch.device,
) -> Backdoored:
    """M_b with the defender's own backdoor planted: the defender attacks a copy as BadNets would, on D_c poisoned
    with its own trigger, at its own retraining settings `train`, keeping the epoch best on clean dev accuracy plus
    dev ASR for that trigger (the attacker's selection; the dev set stands in for test, which is never read); with
    its dev scores and poisoned dev set. Of M_b it reads the weights only, never the attacker's trigger."""
    fields = {
        "suspect": suspect.key,
        "clean": dataset_digest(clean),
        "proxy": key_fields(proxy),
        "train": key_fields(train),
        "dev": dataset_digest(dev),
        "seed": seed,
    }

    def build(folder: Path) -> None:
        config = AttackConfig(poison=proxy.poison_config(), train=train)
        result = run_attack(suspect.classifier, Splits(train=clean, dev=dev, test=dev), config, seed=seed)
        scores = evaluate(
            result.backdoored,
            test=dev,
            poisoned_test=result.poisoned_dev,
            target=proxy.target,
            max_length=spec.training.max_length,
        )
        save_model(result.backdoored, folder)
        write_dataset(folder / "poisoned_dev.json", result.poisoned_dev)
        (folder / "scores.json").write_text(json.dumps({"dev": scores.percents()}, indent=2))

    folder = store.get_or_build("proxy-backdoored", fields, build)
    return Backdoored(
        classifier=load_model(folder, device),
        key=content_key("proxy-backdoored", fields),
        scores=json.loads((folder / "scores.json").read_text()),
        poisoned={"dev": read_dataset(folder / "poisoned_dev.json")},
    )
