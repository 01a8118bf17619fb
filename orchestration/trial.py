"""One trial of a sweep without Ray: a cell's defence run on its backdoored model, scored, as a result row.

The trial's result is itself an artifact: a trial run again (a Tune retry after its report was lost,
a resumed or repeated sweep) reads its row from the store instead of training again.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from core.data import TextDataset
from core.defenses import DefenseInputs, get_defense
from core.defenses.mbtsad import MbtsadConfig, loss_terms, mbtsad_with_teacher
from core.evaluate import evaluate
from core.models import Classifier
from orchestration.artifacts import (
    Backdoored,
    augment_function,
    backdoored,
    clean_finetuned,
    dataset_digest,
    defender_clean,
    load_data,
    model_identity,
    retrained,
    start_model,
)
from orchestration.code_version import describe, running_code_version
from orchestration.memory import peak_resident_mb, release_memory, reset_peak
from orchestration.results import trial_row
from orchestration.spec import MBTSAD_FAMILY, Cell, SweepSpec, attack_setup, dataset_spec, defense_setup
from orchestration.store import content_key, key_fields
from orchestration.uri_store import Store


def trial_fields(spec: SweepSpec, cell: Cell) -> dict[str, Any]:
    """The settings that determine a cell's result, as declared (no file is read)."""
    spec = dataset_spec(spec, cell.dataset)
    config = None if cell.defense == "none" else defense_setup(spec, cell)
    return {
        "model": spec.model,
        "dataset": cell.dataset,
        "data": key_fields(spec.data),
        "attack": key_fields(attack_setup(spec, cell.attack)),
        "defense": cell.defense,
        "config": None if config is None else key_fields(config),
        "augmentation": cell.augmentation,
        "mlm": key_fields(spec.mlm) if cell.augmentation == "cwea" else None,
        "seed": cell.seed,
        "evaluate_on": spec.evaluate_on,
        "max_length": spec.training.max_length,
    }


def trial_id(spec: SweepSpec, cell: Cell) -> str:
    """The cell's id in the results (docs/results-schema.md): a content hash of its settings."""
    return content_key("trial", trial_fields(spec, cell))


def mbtsad_student(
    store: Store,
    spec: SweepSpec,
    config: MbtsadConfig,
    suspect: Backdoored,
    clean: TextDataset,
    dev: TextDataset,
    seed: int,
    device: torch.device,
) -> Classifier:
    """An MBTSAD-family row's student M_c of `suspect` (M_b, or the tuning proxy), its teacher and D_a read from the
    store (built by the first trial that needs them)."""
    teacher = None
    if any("teacher" in term.needs for term in loss_terms(config)):
        teacher = (
            clean_finetuned(store, suspect, config.teacher.train, clean, dev, seed, device)
            if config.teacher_data == "clean"
            else retrained(store, spec, suspect, config.teacher, clean, dev, seed, device)
        )
    augment = augment_function(store, spec, config.teacher, clean, seed)
    inputs = DefenseInputs(suspect=suspect.classifier, clean=clean, dev=dev, seed=seed)
    return mbtsad_with_teacher(inputs, config, teacher=teacher, augment=augment).student


def score_cell(spec: SweepSpec, cell: Cell, store: Store, device: torch.device) -> dict[str, float | None]:
    """Run the cell's defence on its (cached) M_b and score it on the spec's evaluation split, in percent."""
    spec = dataset_spec(spec, cell.dataset)
    splits = load_data(spec, cell.dataset)
    suspect = backdoored(store, spec, cell.dataset, cell.attack, cell.seed, device)
    split = spec.evaluate_on
    if cell.defense == "none":
        return suspect.scores[split]
    clean = defender_clean(spec, splits, cell.seed)
    config = defense_setup(spec, cell)

    def score(classifier: Classifier, detector: Any = None) -> dict[str, float | None]:
        return evaluate(
            classifier,
            test=splits.test if split == "test" else splits.dev,
            poisoned_test=suspect.poisoned[split],
            target=spec.target,
            detector=detector,
            max_length=spec.training.max_length,
        ).percents()

    if cell.defense in ("ts-ft", "aug-ft"):
        return score(retrained(store, spec, suspect, config, clean, splits.dev, cell.seed, device))
    if cell.defense == "cft":  # the same model as NAD's and MBTSAD-CFT-teacher's teacher, so built once for them
        return score(clean_finetuned(store, suspect, config.train, clean, splits.dev, cell.seed, device))
    inputs = DefenseInputs(suspect=suspect.classifier, clean=clean, dev=splits.dev, seed=cell.seed)
    if cell.defense in MBTSAD_FAMILY:
        return score(mbtsad_student(store, spec, config, suspect, clean, splits.dev, cell.seed, device))
    defense = get_defense(cell.defense)
    if defense.needs_pretrained:
        pretrained = start_model(spec, cell.seed)
        pretrained.model.to(device)
        inputs = dataclasses.replace(inputs, pretrained=pretrained)
    if defense.kind == "detection":
        return score(suspect.classifier, detector=defense.run(inputs, config))
    return score(defense.run(inputs, config))


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """A cell's result row, and whether this call computed it."""

    row: dict[str, Any]
    computed: bool  # False when the store already held the row (a repeated, resumed or concurrent trial)


def result_fields(spec: SweepSpec, cell: Cell) -> dict[str, Any]:
    """The key of a cell's stored result: its settings, the starting weights and the data's content."""
    spec = dataset_spec(spec, cell.dataset)
    splits = load_data(spec, cell.dataset)
    return {
        **trial_fields(spec, cell),
        "weights": model_identity(spec),
        "content": dataset_digest(splits.train, splits.dev, splits.test),
    }


def stored_results(spec: SweepSpec, plan: list[Cell], store: Store) -> int:
    """How many of the cells' results this code already computed into the store."""
    return sum(store.has("trial", result_fields(spec, cell)) for cell in plan)


def run_trial(spec: SweepSpec, cell: Cell, *, store: Store, device: torch.device) -> TrialResult:
    """The cell's result row, computed once per (settings, weights, data, code) and read from the store after."""
    fields = result_fields(spec, cell)
    computed = False

    def build(folder: Path) -> None:
        nonlocal computed
        started = time.perf_counter()
        reset_peak()
        scores = score_cell(spec, cell, store, device)
        row = trial_row(
            trial_id=trial_id(spec, cell),
            cell=cell,
            model=spec.model,
            wall_s=time.perf_counter() - started,
            peak_rss_mb=peak_resident_mb(),
            scores=scores,
            code=describe(running_code_version()),
        )
        (folder / "row.json").write_text(json.dumps(row, indent=2))
        computed = True

    row = json.loads((store.get_or_build("trial", fields, build) / "row.json").read_text())
    release_memory()  # a reused trial actor would otherwise keep each trial's freed memory (orchestration/memory.py)
    row["tuned_by"] = cell.tuned_by  # how the settings were chosen is not part of the result: this cell's label
    return TrialResult(row=row, computed=computed)
