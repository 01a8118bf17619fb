"""The fidelity study without Ray: TS-FT (the teacher) and MBTSAD's distillation epoch by epoch, under each attack
profile and at the paper's rates or the model's, trained until clean dev stops improving.

A study cell is one (attack, profile, rate regime, seed) and the distillation rates to try, as multiples of
the base rate (the paper's is 25): one teacher, then one distillation per multiple. Its M_b comes from the
artifact store under the same key a sweep with those settings uses, so the study's backdoored models serve
later sweeps. Clean test
CACC, ASR and the clean flip after every epoch are a diagnosis (`fit`'s `diagnose`): the epoch each run keeps
is still the one with the best clean dev accuracy, and the row says which it is.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from core.defenses import DefenseInputs
from core.defenses.aug_ft import augmented_set
from core.defenses.cft import clean_finetune
from core.defenses.mbtsad import mbtsad_with_teacher
from core.evaluate import evaluate
from core.models import Classifier
from core.rates import DISTIL_RATIO, PAPER_RETRAIN_LR, stage_rates
from core.train import EpochRecord
from orchestration.artifacts import augment_function, backdoored, defender_clean, load_data
from orchestration.code_version import describe, running_code_version
from orchestration.spec import Cell, SweepSpec, apply_settings, dataset_spec, defense_setup
from orchestration.store import write_atomic
from orchestration.uri_store import Store

STAGES = ("none", "ts-ft", "mbtsad")  # M_b's own scores (epoch 0), the teacher's epochs, the distillation's
# docs/results-schema.md, `study/<attack>-<profile>-<regime>-<seed>.parquet`, in its order.
STUDY_SCHEMA: dict[str, type[pl.DataType]] = {
    "dataset": pl.String,
    "attack": pl.String,
    "profile": pl.String,
    "regime": pl.String,
    "base_lr": pl.Float64,
    "distil_lr": pl.Float64,  # MBTSAD's rows only
    "seed": pl.Int64,
    "stage": pl.String,
    "epoch": pl.Int64,
    "dev_cacc": pl.Float64,
    "cacc": pl.Float64,
    "asr": pl.Float64,
    "clean_flip": pl.Float64,
    "selected": pl.Boolean,
    "code": pl.String,
}


@dataclass(frozen=True)
class StudyCell:
    """One line of the study: an attack under a profile, trained at a regime's rates, with one seed."""

    dataset: str
    attack: str
    profile: str  # project or openbackdoor (core.attacks.ATTACK_PROFILES)
    regime: str  # paper (the paper's 2e-5 as the base rate) or model (the rate `rates` found)
    base_lr: float  # the counterpart of 2e-5: attack and retraining rate
    seed: int
    distil_ratios: tuple[float, ...] = (DISTIL_RATIO,)  # distillation rates / base_lr, one distillation each

    def stem(self) -> str:
        """`sst2-badnets-openbackdoor-model-0`, then `-x5-2.5` for multiples other than the paper's 25 alone."""
        stem = f"{self.dataset}-{self.attack}-{self.profile}-{self.regime}-{self.seed}"
        if self.distil_ratios != (DISTIL_RATIO,):
            stem += "-x" + "-".join(f"{ratio:g}" for ratio in self.distil_ratios)
        return stem.replace("/", "_")


def study_cells(
    spec: SweepSpec,
    *,
    profiles: tuple[str, ...],
    model_lr: float,
    regimes: tuple[str, ...],
    distil_ratios: tuple[float, ...] = (DISTIL_RATIO,),
) -> list[StudyCell]:
    """Every (dataset, attack, profile, regime, seed) of the spec's datasets, attacks and seeds."""
    rates = {"paper": PAPER_RETRAIN_LR, "model": model_lr}
    unknown = [regime for regime in regimes if regime not in rates]
    if unknown:
        raise ValueError(f"unknown rate regimes {unknown}; valid: {', '.join(rates)}")
    if not distil_ratios or any(ratio <= 0 for ratio in distil_ratios):
        raise ValueError(f"distillation multiples must be positive, got {list(distil_ratios)}")
    return [
        StudyCell(dataset, attack, profile, regime, rates[regime], seed, tuple(distil_ratios))
        for seed in spec.seeds
        for dataset in spec.datasets
        for attack in spec.attacks
        for profile in profiles
        for regime in regimes
    ]


def planned_cells(
    spec: SweepSpec,
    *,
    profiles: tuple[str, ...] = (),
    regimes: tuple[str, ...] = (),
    model_lr: float | None = None,
    rates_file: Path | None = None,
    distil_ratios: tuple[float, ...] = (),
) -> list[StudyCell]:
    """`study_cells` from `cli.py study`'s choices: both profiles and both regimes unless named, the model's rate
    given or read from a `cli.py rates` report, the paper's distillation multiple unless others are named."""
    regimes = regimes or ("paper", "model")
    if rates_file is not None:
        model_lr = float(json.loads(rates_file.read_text())["chosen"])
    if "model" in regimes and model_lr is None:
        raise ValueError("the model regime needs --model-lr or --rates-file (from `cli.py rates`)")
    return study_cells(
        spec,
        profiles=profiles or ("project", "openbackdoor"),
        model_lr=model_lr or 0.0,
        regimes=regimes,
        distil_ratios=distil_ratios or (DISTIL_RATIO,),
    )


def cell_spec(
    spec: SweepSpec, cell: StudyCell, *, max_epochs: int, patience: int, distil_ratio: float = DISTIL_RATIO
) -> SweepSpec:
    """The sweep settings of a study cell: its profile, its regime's rates (distillation at `distil_ratio` times
    the base rate), training until clean dev converges."""
    rates = stage_rates(cell.base_lr)
    return apply_settings(
        spec,
        {
            "attack_profile": cell.profile,
            "training.attack.lr": rates["attack"],
            "training.retrain.lr": rates["retrain"],
            "training.distil.lr": distil_ratio * cell.base_lr,
            **{f"training.{stage}.epochs": max_epochs for stage in ("retrain", "distil")},
            **{f"training.{stage}.patience": patience for stage in ("retrain", "distil")},
        },
    )


def run_study_cell(
    spec: SweepSpec, cell: StudyCell, *, store: Store, device: torch.device, max_epochs: int, patience: int
) -> list[dict[str, Any]]:
    """M_b's scores, then every epoch of TS-FT and of each MBTSAD distillation toward that teacher, as schema rows."""
    spec = cell_spec(dataset_spec(spec, cell.dataset), cell, max_epochs=max_epochs, patience=patience)
    splits = load_data(spec, cell.dataset)
    suspect = backdoored(store, spec, cell.dataset, cell.attack, cell.seed, device)
    clean = defender_clean(spec, splits, cell.seed)
    config = defense_setup(spec, Cell(cell.dataset, cell.attack, "mbtsad", "ts", cell.seed))
    tokenizer = suspect.classifier.tokenizer

    def diagnose(model: torch.nn.Module) -> dict[str, float | None]:
        return evaluate(
            Classifier(model=model, tokenizer=tokenizer),
            test=splits.test,
            poisoned_test=suspect.poisoned["test"],
            target=spec.target,
            max_length=spec.training.max_length,
        ).percents()

    augment = augment_function(store, spec, config.teacher, clean, cell.seed)
    data = augmented_set(clean, config.teacher, seed=cell.seed, augment=augment)
    teacher_epochs: list[EpochRecord] = []
    teacher = clean_finetune(
        suspect.classifier,
        data,
        splits.dev,
        train_config=config.teacher.train,
        seed=cell.seed,
        on_epoch=teacher_epochs.append,
        diagnose=diagnose,
    )
    inputs = DefenseInputs(suspect=suspect.classifier, clean=clean, dev=splits.dev, seed=cell.seed)
    Run = tuple[str, float | None, list[EpochRecord] | tuple[EpochRecord, ...]]  # stage, distillation lr, epochs
    runs: list[Run] = [("ts-ft", None, teacher_epochs)]
    for ratio in cell.distil_ratios:
        ratio_spec = cell_spec(spec, cell, max_epochs=max_epochs, patience=patience, distil_ratio=ratio)
        distil = defense_setup(ratio_spec, Cell(cell.dataset, cell.attack, "mbtsad", "ts", cell.seed))
        result = mbtsad_with_teacher(inputs, distil, teacher=teacher, augment=augment, diagnose=diagnose)
        runs.append(("mbtsad", distil.train.lr, result.distillation.history))
    code = describe(running_code_version())
    base = {k: v for k, v in asdict(cell).items() if k in STUDY_SCHEMA} | {"code": code}
    dev_none = suspect.scores["dev"]["cacc"]
    rows = [{**base, "stage": "none", "epoch": 0, "dev_cacc": dev_none, **suspect.scores["test"], "selected": True}]
    for stage, distil_lr, records in runs:
        kept = _kept_epoch(records)
        rows += [
            {
                **base,
                "stage": stage,
                "distil_lr": distil_lr,
                "epoch": record.epoch,
                "dev_cacc": None if record.dev is None else record.dev.percent,
                **(record.diagnosis or {}),
                "selected": record.epoch == kept,
            }
            for record in records
        ]
    return rows


def _kept_epoch(records: list[EpochRecord] | tuple[EpochRecord, ...]) -> int:
    """The epoch `fit` keeps: the first with the best clean dev score."""
    scored = [record for record in records if record.score is not None]
    return max(scored, key=lambda record: (record.score, -record.epoch)).epoch if scored else records[-1].epoch


def write_study_rows(run_dir: Path, cell: StudyCell, rows: list[dict[str, Any]]) -> Path:
    """A cell's rows as `<run_dir>/study/<stem>.parquet`, atomically."""
    frame = pl.DataFrame([{name: row.get(name) for name in STUDY_SCHEMA} for row in rows], schema=STUDY_SCHEMA)
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    path = run_dir / "study" / f"{cell.stem()}.parquet"
    write_atomic(path, buffer.getvalue())
    return path
