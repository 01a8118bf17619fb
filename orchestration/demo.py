"""The README's demo without Ray (`cli.py demo`): BadNets builds M_b on SST-2, then CFT and MBTSAD purify it, with
the smoke sweep's settings (orchestration/presets.py), scored side by side."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from core.attacks import run_attack
from core.defenses import DefenseInputs, get_defense
from core.evaluate import Evaluation, evaluate
from orchestration.artifacts import defender_clean, load_data, start_model
from orchestration.evaluation import write_json
from orchestration.presets import smoke
from orchestration.progress import training_progress
from orchestration.spec import Stage, SweepSpec, apply_settings, attack_setup, defense_setup, table_cell

DEMO_DEFENSES = ("cft", "mbtsad")
REPORT = "demo.json"


@dataclass(frozen=True)
class Demo:
    """The demo's rows (M_b, then each defence) and its report (also in `out/demo.json`)."""

    rows: dict[str, Evaluation]
    report: dict[str, Any]


def demo_spec(model: str, train_size: int, data_dir: Path | None = None) -> SweepSpec:
    """The smoke preset on `model` and the first `train_size` SST-2 sentences. The tiny model, trained from
    scratch, keeps the preset's larger rates; a pre-trained encoder gets the paper's rates, 2 epochs a stage."""
    spec = apply_settings(smoke(), {"model": model, "data.max_train": train_size})
    if data_dir is not None and spec.data_dir is None:
        spec = replace(spec, data_dir=str(data_dir))
    if model != "tiny":  # a pre-trained encoder: the paper's rates, as the cpu preset
        two = Stage(epochs=2)
        spec = replace(spec, training=replace(spec.training, attack=two, retrain=two, distil=two))
    return spec


def run_demo(
    out: Path,
    *,
    model: str = "tiny",
    train_size: int = 2000,
    seed: int = 0,
    data_dir: Path | None = None,
    console: Console | None = None,
) -> Demo:
    """BadNets on SST-2, then CFT and MBTSAD on its M_b, each scored on the test set and its triggered copy."""
    spec = demo_spec(model, train_size, data_dir)
    splits = load_data(spec, "sst2")
    started = time.perf_counter()
    rows: dict[str, Evaluation] = {}
    with training_progress(console) as progress:
        progress.start("BadNets attack")
        result = run_attack(
            start_model(spec, seed), splits, attack_setup(spec, "badnets"), seed=seed, on_step=progress.on_step
        )
        rows["none (M_b)"] = result.evaluation
        clean = defender_clean(spec, splits, seed)
        inputs = DefenseInputs(suspect=result.backdoored, clean=clean, dev=splits.dev, seed=seed)
        for method in DEMO_DEFENSES:
            config = defense_setup(spec, table_cell("sst2", "badnets", method, seed, {}))
            progress.start(method)
            purified = get_defense(method).run(inputs, config, on_step=progress.on_step)
            rows[method] = evaluate(
                purified,
                test=splits.test,
                poisoned_test=result.poisoned_test,
                target=spec.target,
                max_length=spec.training.max_length,
            )
    report = {
        "model": model,
        "train_size": len(splits.train),
        "clean_samples": len(clean),
        "seed": seed,
        "wall_s": round(time.perf_counter() - started, 1),
        "scores": {name: evaluation.percents() for name, evaluation in rows.items()},
    }
    write_json(out / REPORT, report)
    return Demo(rows=rows, report=report)
