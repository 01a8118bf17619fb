"""The model's counterpart of the paper's 2e-5 (`cli.py rates`): clean fine-tuning of the pre-trained model at each
candidate rate (core/rates.py), the choice, the sweep settings it implies, and a JSON report."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.data import load_splits
from core.rates import RateCurve, RateSearch, choose_rate, rate_curve, stage_rates
from core.train import TrainConfig
from orchestration.evaluation import write_json
from orchestration.hub import open_classifier, resolve_model
from orchestration.progress import training_progress


@dataclass(frozen=True)
class RateChoice:
    """Every rate's clean dev curve, the chosen rate and each training stage's rate derived from it."""

    model: str  # as `resolve_model` pins it
    dataset: str
    train_size: int
    epochs: int
    curves: tuple[RateCurve, ...]
    chosen: float
    stage_rates: Mapping[str, float]

    def sweep_settings(self) -> str:
        """The --set options that run a sweep at these rates."""
        return " ".join(f"--set training.{stage}.lr={lr:g}" for stage, lr in self.stage_rates.items())


def search_rates(
    out: Path,
    *,
    model: str = "minilm",
    dataset: str = "sst2",
    rates: Sequence[float] = (),
    epochs: int = 2,
    max_length: int = 48,
    max_train: int | None = None,
    seed: int = 0,
    tolerance: float = 0.2,
    data_dir: Path | None = None,
    console: Console | None = None,
) -> RateChoice:
    """Fine-tune `model` on clean training data at each rate (default: RateSearch's, 2e-5 to 4e-4) and keep the
    one with the best clean dev accuracy, a smaller one within `tolerance` points winning; the report goes to
    `out`. Clean data only."""
    search = RateSearch(
        **({"rates": tuple(rates)} if rates else {}),
        train=TrainConfig(lr=RateSearch().train.lr, epochs=epochs, max_length=max_length),
        tolerance=tolerance,
    )
    splits = load_splits(dataset, data_dir)
    train = splits.train if not max_train else splits.train.subset(range(min(max_train, len(splits.train))))
    base_model = resolve_model(model)
    pretrained = open_classifier(base_model, seed=seed, data_dir=data_dir)
    started = time.perf_counter()
    curves = []
    with training_progress(console) as progress:
        for lr in search.rates:
            progress.start(f"clean fine-tuning at {lr:g}")
            curve = rate_curve(
                pretrained, train, splits.dev, replace(search.train, lr=lr), seed=seed, on_step=progress.on_step
            )
            curves.append(curve)
    chosen = choose_rate(curves, tolerance=search.tolerance)
    choice = RateChoice(base_model, dataset, len(train), epochs, tuple(curves), chosen, stage_rates(chosen))
    write_json(
        out,
        {
            "model": base_model,
            "dataset": dataset,
            "train_size": len(train),
            "seed": seed,
            "epochs": epochs,
            "max_length": max_length,
            "tolerance": tolerance,
            "curves": {f"{c.lr:g}": list(c.dev_accuracy) for c in curves},
            "chosen": chosen,
            "stage_rates": dict(choice.stage_rates),
            "sweep_settings": choice.sweep_settings(),
            "wall_s": round(time.perf_counter() - started, 1),
        },
    )
    return choice


def curves_table(choice: RateChoice) -> Table:
    """Clean dev accuracy per epoch at each rate, the chosen one starred."""
    table = Table(
        title=f"clean dev accuracy per epoch ({choice.model}, {choice.dataset}, {choice.train_size} training samples)"
    )
    for column in ("lr", *(f"epoch {e}" for e in range(1, choice.epochs + 1)), "best"):
        table.add_column(column, justify="right")
    for curve in choice.curves:
        mark = " *" if curve.lr == choice.chosen else ""
        table.add_row(f"{curve.lr:g}{mark}", *(f"{a:.2f}" for a in curve.dev_accuracy), f"{curve.best:.2f}")
    return table
