"""The sweeps this project ships, as data: `paper` (the paper's grid), `cpu` (the same grid sized for a
laptop) and `smoke` (seconds per trial, for tests and the README). Override any field with
`--config FILE` or `--set key=value` (see orchestration/spec.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.mlm import MlmHeadConfig
from orchestration.spec import DataSpec, Resources, Stage, SweepSpec, TrainingSpec, apply_settings


def paper() -> SweepSpec:
    """Tables I-IV of the paper: SST-2 and IMDb, BadNets/LWP/EP, every row, three seeds, BERT-base.

    `python cli.py sweep --preset paper --cluster cluster.yaml` (or `--address ray://HEAD:10001`); then
    `python cli.py tables --results runs/paper --out tables_out/`. The model is the hub's bert-base-uncased,
    pinned to the commit `main` names when the sweep starts (`--set model=bert-base-uncased@REV` or a folder).
    The paper's rates (retraining 2e-5, distillation 5e-4, EP 5e-2) and SPEC's epochs; max length 128
    truncates IMDb, whose reviews are first cut to 64 words (`data.max_words`) so that every inserted trigger
    lies inside that window (the `cpu` preset says why). Table III (aug-ft rows) covers SST-2, as the paper's
    does.
    """
    return SweepSpec(
        name="paper",
        model="bert-base-uncased",  # by hub id: safetensors weights, fetched into the local Hugging Face cache
        datasets=("sst2", "imdb"),
        seeds=(0, 1, 2),
        dataset_settings={"imdb": {"data.max_words": 64}},
    )


def cpu() -> SweepSpec:
    """The paper's grid (Tables I-IV) on the offline MiniLM default and the OpenBackdoor split, sized for
    2 CPU cores: `python cli.py sweep --preset cpu` (SST-2); `--set 'datasets=[sst2,imdb]'` adds IMDb.

    The paper's setting, as the fidelity study (docs/results/fidelity/) settled it for MiniLM:
    - OpenBackdoor's attacks (`attack_profile: openbackdoor`): BadNets and EP's clean model 2 epochs under
      a 3-epoch warm-up, LWP 5 epochs, EP's row 5 SGD epochs, no weight decay, mixed-label poisoning.
    - MiniLM's own rates: `python cli.py rates` chose 2e-4 as its counterpart of the paper's 2e-5, for the
      attacks and every retraining; distillation at 5 times it, 1e-3 (the paper's 25 times collapsed the
      student on MiniLM, 2.5 times left most of the backdoor).
    - Retraining and distillation until clean dev accuracy stops improving (patience 2), at most 4 epochs.
    - Length 48 (most SST-2 sentences fit) and the ratio searches of Fine-Mixing and Fine-Purifying over
      three candidates instead of nine (sized with `python bench/store_bench.py`).
    - IMDb (`dataset_settings.imdb`): every review cut to its first 64 words before anything else
      (`data.max_words`), then truncated to 128 tokens (the paper's length). A review averages about 230
      words, 300 tokens; cut, 85, and 99.6% of the cut ones fit in 126 tokens. Without the cut a trigger
      inserted at a uniform word position falls past the truncation in about 45% of the poisoned reviews
      (session 8 measured the attacks not taking: BadNets and EP ASR = the clean flip rate), so the attacker
      poisons the part of the review the model reads, and the model reads less of each review. The first
      3,000 reviews of the fixed shuffled training split for the attacker (so D_c is 600 reviews), 500 dev
      and 2,000 test reviews, and Tables I, II and IV's main rows (None, CFT, TS-FT, MBTSAD, Fine-Mixing,
      Fine-Purifying, STRIP, RAP). On about 1,000 poisoned test reviews an ASR's binomial standard error is
      at most 1.6 points (1.0 at an ASR of 10%); a CACC on 2,000 at most 1.1. EP's row trains on the
      attacker's 300 poisoned reviews; its 5 epochs there (47 steps) left no backdoor (ASR 16.19), so IMDb's
      EP takes 38 epochs, the ~350 steps OpenBackdoor's 5 take on the whole training split (2,250 poisoned).
      Measured (session 9, seed 0, `docs/results/cpu/README.md`): the 24 rows take 129 trial-minutes (M_b
      4.9-19.2 min, the others 1.5-6.4); BadNets and LWP take (96.29, 100.00), EP partly (46.70).
    - SST-2's rows are every row of Tables I, II and IV, NAD and MBTSAD-CFT-teacher included (what token
      splitting adds over NAD, core/defenses/mbtsad.py); IMDb's list above leaves those two out.
    Add seeds with `--set seeds=[0,1,2]`.
    """
    return SweepSpec(
        name="cpu",
        model="minilm",
        datasets=("sst2",),
        attack_profile="openbackdoor",
        training=TrainingSpec(
            max_length=48,
            attack=Stage(lr=2e-4),  # the epochs are the profile's
            retrain=Stage(lr=2e-4, epochs=4, patience=2),
            distil=Stage(lr=1e-3, epochs=4, patience=2),
        ),
        attack_settings={"lwp": {"train.epochs": 5}},
        defense_settings={
            "fine-mixing": {"rho_grid": [0.2, 0.5, 0.8]},
            "fine-purifying": {"reset_grid": [0.3, 0.6, 0.9]},
        },
        dataset_settings={
            "imdb": {
                "training.max_length": 128,
                "data.max_words": 64,
                "data.max_train": 3000,
                "attack_settings.ep.train.epochs": 38,  # the row steps OpenBackdoor's 5 epochs take on 22,500 reviews
                "data.max_dev": 500,
                "data.max_test": 2000,
                "defenses": ["none", "cft", "ts-ft", "mbtsad", "fine-mixing", "fine-purifying", "strip", "rap"],
            }
        },
    )


def base() -> SweepSpec:
    """The paper's main rows on a base-sized encoder (110M, as the paper's BERT-base), offline: all-mpnet-base-v2
    (MPNet, 12 layers, hidden 768), installed by `python cli.py fetch-model mpnet-base` and pinned to its commit.
    `python cli.py sweep --preset base` (SST-2, BadNets/LWP/EP, seed 0).

    The paper's own setting: OpenBackdoor's attacks as in `cpu`, the paper's rates (retraining 2e-5,
    distillation 5e-4, 25 times it), MBTSAD at alpha = beta = 1 unless `best_params` says otherwise, retraining
    and distillation until clean dev accuracy stops improving (patience 2, at most 4 epochs), length 48 and the
    `cpu` preset's three-candidate ratio searches. The rows are Tables I and II's main ones (None, CFT, TS-FT,
    MBTSAD, Fine-Mixing, Fine-Purifying, STRIP, RAP); `--set 'defenses=[...]'` adds Table IV's ablations. A
    base-sized trial costs about 5 times a MiniLM one on CPUs (docs/results/base/). The backdoored model must
    pass claim (a) before its defences are worth running: run `--set 'defenses=[none]'` first and read its ASR.
    """
    return SweepSpec(
        name="base",
        model="mpnet-base",
        datasets=("sst2",),
        attack_profile="openbackdoor",
        defenses=("none", "cft", "ts-ft", "mbtsad", "fine-mixing", "fine-purifying", "strip", "rap"),
        augmentations=(),
        training=TrainingSpec(
            max_length=48,
            attack=Stage(lr=2e-5),  # the epochs are the profile's
            retrain=Stage(lr=2e-5, epochs=4, patience=2),
            distil=Stage(lr=5e-4, epochs=4, patience=2),
        ),
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


PRESETS: dict[str, Callable[[], SweepSpec]] = {"smoke": smoke, "cpu": cpu, "base": base, "paper": paper}


def preset(name: str) -> SweepSpec:
    """The preset called `name`; an unknown name raises with the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]()


def configured(name: str, settings: Mapping[str, Any], data_dir: Path | None = None) -> SweepSpec:
    """The preset `name` with `settings` applied; `data_dir` (the CLI's --data-dir) unless the settings name one."""
    spec = apply_settings(preset(name), settings)
    return spec if data_dir is None or spec.data_dir is not None else dataclasses.replace(spec, data_dir=str(data_dir))
