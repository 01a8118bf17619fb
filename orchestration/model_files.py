"""Model folders on disk: safetensors weights, the tokenizer, and a JSON card of what was done to them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.models import Classifier, load_classifier, sha256_of
from orchestration.store import publish_folder

CARD = "mbtsad.json"  # provenance beside the weights: attack, trigger, target, scores


def save_classifier(classifier: Classifier, destination: Path, card: dict[str, Any]) -> Path:
    """Write weights (safetensors), tokenizer and card into `destination` atomically."""

    def build(folder: Path) -> None:
        classifier.model.save_pretrained(folder, safe_serialization=True)
        classifier.tokenizer.save_pretrained(folder)
        (folder / CARD).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))

    publish_folder(build, destination)
    return destination


def read_card(folder: Path) -> dict[str, Any]:
    """The card saved beside a model, or an empty one for a model from elsewhere."""
    path = folder / CARD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def weights_sha256(folder: Path) -> dict[str, str]:
    """The sha256 of each weights file of a model folder, by file name: what a purified model's card records of a
    suspect read from a folder."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model.bin"))
    return {file.name: sha256_of(file) for file in files}


def load_model_folder(folder: Path) -> tuple[Classifier, dict[str, Any]]:
    """A classifier folder and its card."""
    return load_classifier(folder), read_card(folder)
