"""The sweeps this project ships, as data: `paper` (the paper's grid), `cpu` (the same grid sized for a
laptop) and `smoke` (seconds per trial, for tests and the README). Override any field with
`--config FILE` or `--set key=value` (see orchestration/spec.py)."""

from __future__ import annotations

from collections.abc import Callable

from core.mlm import MlmHeadConfig
from orchestration.spec import DataSpec, Resources, Stage, SweepSpec, TrainingSpec


def paper() -> SweepSpec:
    """Tables I-IV of the paper: SST-2 and IMDb, BadNets/LWP/EP, every row, three seeds, BERT-base.

    `python cli.py sweep --preset paper --cluster cluster.yaml` (or `--address ray://HEAD:10001`); then
    `python cli.py tables --results runs/paper --out tables_out/`. The model is the hub's bert-base-uncased,
    pinned to the commit `main` names when the sweep starts (`--set model=bert-base-uncased@REV` or a folder).
    The paper's rates (retraining 2e-5, distillation 5e-4, EP 5e-2) and SPEC's epochs; max length 128
    truncates IMDb. Table III (aug-ft rows) covers SST-2, as the paper's does.
    """
    return SweepSpec(
        name="paper",
        model="bert-base-uncased",  # by hub id: safetensors weights, fetched into the local Hugging Face cache
        datasets=("sst2", "imdb"),
        seeds=(0, 1, 2),
    )


def cpu() -> SweepSpec:
    """The paper's grid (Tables I-IV, SST-2 only) on the offline MiniLM default and the OpenBackdoor split,
    one seed in about two hours on 2 CPU cores: `python cli.py sweep --preset cpu`.

    Sized with `python bench/store_bench.py` (training examples per trial times SPEC's measured
    throughput): length 48 (most SST-2 sentences fit), 2 epochs everywhere, and the ratio searches of
    Fine-Mixing and Fine-Purifying over three candidates instead of nine. LWP keeps 5 attack epochs, as
    OpenBackdoor's LWP config: its layer-wise loss learns the two-piece trigger slowly (82% ASR after 2
    epochs at length 64, docs/real-run.md). Add seeds with `--set seeds=[0,1,2]` (each seed about as long again).
    """
    two = Stage(epochs=2)
    return SweepSpec(
        name="cpu",
        model="minilm",
        datasets=("sst2",),
        training=TrainingSpec(max_length=48, attack=two, retrain=two, distil=two),
        attack_settings={"lwp": {"train.epochs": 5}},
        defense_settings={
            "fine-mixing": {"rho_grid": [0.2, 0.5, 0.8]},
            "fine-purifying": {"reset_grid": [0.3, 0.6, 0.9]},
        },
    )


def smoke() -> SweepSpec:
    """Every cell of Tables I-IV for BadNets on 2,000 SST-2 sentences with a tiny BERT trained from scratch,
    for tests and the README: `python cli.py sweep` (about a minute and a half on 2 CPU cores).

    A model without pre-training needs larger rates than the paper's: the attack trains at 1e-3 for
    5 epochs, retraining at 1e-3 and distillation at 1e-2 (as `cli.py demo`). Fine-Mixing and
    Fine-Purifying take the tiny model's own seed-initialised weights, the attacker's starting point,
    as the "pre-trained" weights. The numbers say nothing about the paper's claims; the plumbing is real.
    """
    return SweepSpec(
        name="smoke",
        model="tiny",
        datasets=("sst2",),
        attacks=("badnets",),
        data=DataSpec(max_train=2000, max_dev=200, max_test=300),
        training=TrainingSpec(
            max_length=32,
            attack=Stage(lr=1e-3, epochs=5),
            retrain=Stage(lr=1e-3, epochs=1),
            distil=Stage(lr=1e-2, epochs=1),
        ),
        mlm=MlmHeadConfig(steps=20, batch_size=16, max_length=32),
        defense_settings={
            "fine-mixing": {"rho_grid": [0.3, 0.7]},
            "fine-purifying": {"reset_grid": [0.3, 0.7], "fisher_samples": 32},
            "fine-pruning": {"step": 0.25},
        },
        resources=Resources(max_failures=1),
    )


PRESETS: dict[str, Callable[[], SweepSpec]] = {"smoke": smoke, "cpu": cpu, "paper": paper}


def preset(name: str) -> SweepSpec:
    """The preset called `name`; an unknown name raises with the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]()
