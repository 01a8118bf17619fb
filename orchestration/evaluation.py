"""Scoring a model, by folder or hub id (`cli.py evaluate`): the trigger ASR is scored with, the test set cut as the
model's attack cut it, and CACC, ASR and the clean flip as a report and a terminal table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from core.data import TextDataset, first_words, load_splits, read_labelled_file
from core.evaluate import Evaluation, evaluate
from core.models import Classifier
from core.poison import PoisonConfig, poisoned_split
from orchestration.hub import model_source
from orchestration.model_files import load_model_folder
from orchestration.store import write_atomic

NO_TRIGGER = "no trigger known (no card of ours names one): ASR needs --attack NAME or --trigger WORD"


def scores_table(title: str, rows: Mapping[str, Evaluation]) -> Table:
    """Evaluations side by side, in percent."""
    table = Table(title=title)
    for column in ("model", "CACC", "ASR", "clean flip", "FRR", "FAR"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for name, evaluation in rows.items():
        values = evaluation.percents()
        table.add_row(name, *("—" if values[k] is None else f"{values[k]:.2f}" for k in values))
    return table


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """A report as indented JSON with sorted keys, atomically."""
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def known_trigger(
    card: Mapping[str, Any], *, attack: str | None = None, triggers: Sequence[str] = ()
) -> PoisonConfig | None:
    """The trigger to score ASR with: `triggers` (BadNets-style insertion, one drawn per sentence), else a named
    attack's defaults, else the model card's, else none; toward the card's target (else label 1)."""
    poison = None
    if attack:
        poison = PoisonConfig(attack=attack, target=card.get("poison", {}).get("target", 1))
    elif "poison" in card:
        poison = PoisonConfig(**{**card["poison"], "triggers": tuple(card["poison"]["triggers"])})
    if triggers:
        return PoisonConfig(attack="badnets", triggers=tuple(triggers), target=poison.target if poison else 1)
    return poison


def score(
    classifier: Classifier, test: TextDataset, poison: PoisonConfig | None, *, seed: int, detector: Any = None
) -> Evaluation:
    """CACC and the clean flip on `test`; ASR too on its triggered non-target copy when a trigger is known."""
    target = poison.target if poison else 1
    poisoned = None if poison is None else poisoned_split(test, poison, split="test", seed=seed)
    return evaluate(classifier, test=test, poisoned_test=poisoned, target=target, detector=detector)


def cut_as_built(data: TextDataset, card: Mapping[str, Any]) -> TextDataset:
    """A named dataset's texts cut as the model's attack cut them (`cli.py attack --max-words`), if it did."""
    return data if card.get("max_words") is None else first_words(data, int(card["max_words"]))


def evaluate_model(
    model: str | Path,
    *,
    dataset: str = "sst2",
    test: Path | None = None,
    attack: str | None = None,
    triggers: Sequence[str] = (),
    seed: int = 0,
    data_dir: Path | None = None,
    json_out: Path | None = None,
) -> Evaluation:
    """A model's scores (a folder, or a hub id as `orchestration.hub.model_source` reads it) on a clean test file
    or a named dataset's test set; ASR with the trigger `known_trigger` finds (none: ASR is None). With
    `json_out`, the percents are written there too."""
    classifier, card = load_model_folder(model_source(model)[0])
    test_set = read_labelled_file(test) if test else cut_as_built(load_splits(dataset, data_dir).test, card)
    poison = known_trigger(card, attack=attack, triggers=triggers)
    evaluation = score(classifier, test_set, poison, seed=seed)
    if json_out:
        write_json(json_out, evaluation.percents())
    return evaluation
