"""Purifying (or guarding) a suspect model, by folder or hub id, with a named defence (`cli.py defend`): the
defender's clean data, scores before and after, the purified model with its card, and a JSON report; both
name the suspect's source (repo and commit, or folder and weights digests)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from core.data import (
    DataFileError,
    Splits,
    clean_subset,
    fewest_to_split,
    load_splits,
    read_labelled_file,
    stratified_split,
)
from core.defenses import DefenseInputs, get_defense
from core.evaluate import Evaluation
from orchestration.evaluation import NO_TRIGGER, cut_as_built, known_trigger, score, write_json
from orchestration.hub import open_classifier, open_suspect, resolve_model
from orchestration.model_files import save_classifier
from orchestration.overrides import apply_overrides, with_training
from orchestration.progress import training_progress

DEV_FRACTION = 0.1  # share of a user's clean file held out for checkpoint selection when no dev file is given
REPORT = "report.json"  # beside the purified model: settings, data sizes, trigger, scores before and after


def defender_splits(
    *,
    clean: Path | None,
    dev: Path | None,
    test: Path | None,
    dataset: str | None,
    fraction: float,
    seed: int,
    data_dir: Path | None,
    card: Mapping[str, Any],
) -> Splits:
    """D_c, clean dev and test: from a user's files, or a share of a named dataset's training set (cut as the
    suspect model's card says its attack cut it)."""
    if clean is not None:
        clean_set = read_labelled_file(clean)
        if dev is None:
            rows = len(clean_set)
            dev_set, clean_set = stratified_split(clean_set, DEV_FRACTION, np.random.default_rng(seed))
            if not len(dev_set):
                raise DataFileError(
                    clean,
                    f"has {rows} row{'s' * (rows != 1)}, too few to hold out a {DEV_FRACTION:.0%} dev split (that "
                    f"needs at least {fewest_to_split(DEV_FRACTION)} rows of one label); give a dev file with --dev",
                )
        else:
            dev_set = read_labelled_file(dev)
        test_set = read_labelled_file(test) if test is not None else dev_set
        return Splits(train=clean_set, dev=dev_set, test=test_set)
    if dataset is None:
        raise ValueError("the defender's clean data: give a clean file or a dataset name")
    splits = load_splits(dataset, data_dir)
    return Splits(
        train=cut_as_built(clean_subset(splits.train, fraction, np.random.default_rng(seed)), card),
        dev=read_labelled_file(dev) if dev else cut_as_built(splits.dev, card),
        test=read_labelled_file(test) if test else cut_as_built(splits.test, card),
    )


@dataclass(frozen=True)
class Purification:
    """What `purify_model` wrote: the report (also in `out/report.json`) and the scores before and after."""

    report: dict[str, Any]
    before: Evaluation
    after: Evaluation
    purified: bool  # a purified model was saved in `out` (a detection defence guards the suspect instead)


def purify_model(
    suspect: str | Path,
    *,
    out: Path,
    method: str = "mbtsad",
    clean: Path | None = None,
    dev: Path | None = None,
    test: Path | None = None,
    dataset: str | None = None,
    fraction: float = 0.2,
    attack: str | None = None,
    triggers: Sequence[str] = (),
    pretrained: str | None = None,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
    overrides: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    console: Console | None = None,
) -> Purification:
    """Run defence `method` on `suspect` (a folder, or a hub id `org/name[@REVISION]` pinned to its commit) with
    the defender's clean data (`clean` [, `dev`, `test`] files, or the share `fraction` of `dataset`'s training
    set), and score it before and after on the clean test set and, with a trigger (`triggers`, else `attack`'s,
    else the model card's; `orchestration.evaluation.known_trigger`), its triggered copy. Without one the
    defence still runs, and the report gives CACC and the clean flip and says what ASR needs.

    A purifying defence saves the purified model in `out` (its card: the suspect's card if it has one of ours,
    the suspect's source, the defence and the scores after); every defence writes `out/report.json`.
    `training` and `overrides` set the defence's config as in `orchestration.backdoor.build_backdoored_model`;
    `pretrained` names w_pre for the defences that need it (a folder, a hub id or minilm).
    """
    defense = get_defense(method)
    config = apply_overrides(with_training(defense.default_config(), **(training or {})), overrides or {})
    if defense.needs_pretrained and not pretrained:
        raise ValueError(f"{method} needs the pre-trained weights w_pre: name a folder, a hub id or minilm")
    opened = open_suspect(suspect)
    card = opened.card
    splits = defender_splits(
        clean=clean, dev=dev, test=test, dataset=dataset, fraction=fraction, seed=seed, data_dir=data_dir, card=card
    )
    poison = known_trigger(card, attack=attack, triggers=triggers)
    pinned = None if not pretrained else resolve_model(pretrained)  # a hub id resolved to its commit once
    inputs = DefenseInputs(
        suspect=opened.classifier,
        clean=splits.train,
        dev=splits.dev,
        seed=seed,
        pretrained=None if pinned is None else open_classifier(pinned, seed=seed, data_dir=data_dir),
    )
    before = score(opened.classifier, splits.test, poison, seed=seed)
    started = time.perf_counter()
    if defense.kind == "detection":
        detector = defense.run(inputs, config)
        after = score(opened.classifier, splits.test, poison, seed=seed, detector=detector)
    else:
        with training_progress(console) as progress:
            progress.start(method)
            purified = defense.run(inputs, config, on_step=progress.on_step, on_epoch=progress.on_epoch)
        after = score(purified, splits.test, poison, seed=seed)
        scores = after.percents()
        save_classifier(
            purified, out, {**card, "suspect": opened.source, "defense": method, "defense_seed": seed, "scores": scores}
        )
    report = {
        "method": method,
        "suspect": str(suspect),
        "suspect_source": opened.source,
        "pretrained": pinned,
        "clean_samples": len(splits.train),
        "dev_samples": len(splits.dev),
        "test_samples": len(splits.test),
        "trigger": None if poison is None else asdict(poison),
        **({"asr": NO_TRIGGER} if poison is None else {}),
        "before": before.percents(),
        "after": after.percents(),
        "config": asdict(config),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json(out / REPORT, report)
    return Purification(report=report, before=before, after=after, purified=defense.kind != "detection")
