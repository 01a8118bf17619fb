"""Augmentation selection (eq. 9, Fig. 3) without Ray: one augmentation's mean CE on M_b and its t-SNE picture.

Each clean sample of D_c yields one augmented text (Fig. 3); M_b's mean cross-entropy over batches of 16
of that set is the augmentation's score, and the largest score is eq. 9's choice. The picture projects
[CLS] vectors of the augmented set, D_c and the poisoned test set (at most `points` of each).

M_b is the sweep's, from the artifact store, or a suspect the defender names (a folder or a hub id,
`select-aug --suspect`): its rows say attack `suspect`, and its picture has poisoned points only when
our card beside its weights names a trigger.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from rich.table import Table

from core.augment import AUGMENTATIONS
from core.defenses.aug_ft import AugFtConfig
from core.poison import poisoned_split
from core.selection import cls_vectors, mean_cross_entropy, most_perturbing
from orchestration.artifacts import augmented, backdoored, defender_clean, load_data
from orchestration.evaluation import known_trigger
from orchestration.hub import model_source
from orchestration.model_files import load_model_folder
from orchestration.spec import SweepSpec, dataset_spec
from orchestration.store import write_atomic
from orchestration.tsne import tsne_png
from orchestration.uri_store import Store

AUGMENTATION_SET = tuple(AUGMENTATIONS)  # B: ts, eda, aeda, cwea, add_trig
PICTURE_POINTS = 300  # at most this many vectors per group, so t-SNE takes seconds
PICTURE_STREAM = 2  # the picture's subsampling Generator is seeded [seed, this]
POISONED_SPLIT = "test"  # the poisoned points of the picture (they play no part in the choice)
SUMMARY_FILE = "select_aug.json"  # beside select_aug/: scores and the argmax per (dataset, attack, seed)
SUSPECT = "suspect"  # the attack column of a named suspect's rows: its attack is not the defender's to know

# docs/results-schema.md, `select_aug/<dataset>-<attack>-<augmentation>-<seed>.parquet`, in its order.
SELECT_AUG_SCHEMA: dict[str, type[pl.DataType]] = {
    "dataset": pl.String,
    "attack": pl.String,
    "augmentation": pl.String,
    "seed": pl.Int64,
    "mean_ce": pl.Float64,
    "n_samples": pl.Int64,
}


@dataclass(frozen=True)
class AugmentationScore:
    """One augmentation's eq. 9 score on one backdoored model, with its Fig. 3 panel as PNG bytes."""

    dataset: str
    attack: str
    augmentation: str
    seed: int
    mean_ce: float
    n_samples: int
    png: bytes

    def row(self) -> dict[str, Any]:
        """The schema row."""
        return {name: getattr(self, name) for name in SELECT_AUG_SCHEMA}

    def stem(self) -> str:
        """`sst2-badnets-eda-0`: the file name of its row and picture, without suffix."""
        return f"{self.dataset}-{self.attack}-{self.augmentation}-{self.seed}".replace("/", "_")


def subsample(texts: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
    """At most `count` of the texts, drawn without replacement, in their original order."""
    if len(texts) <= count:
        return list(texts)
    return [texts[i] for i in sorted(rng.choice(len(texts), size=count, replace=False))]


def score_augmentation(
    spec: SweepSpec,
    *,
    dataset: str,
    attack: str,
    augmentation: str,
    seed: int,
    store: Store,
    device: torch.device,
    points: int = PICTURE_POINTS,
    suspect: str | None = None,
) -> AugmentationScore:
    """M_b's mean cross-entropy (batch 16) on one augmented copy of D_c, and the t-SNE picture of Fig. 3. M_b is
    the store's for (dataset, attack, seed), or the model `suspect` names (a folder or a pinned hub id)."""
    spec = dataset_spec(spec, dataset)
    splits = load_data(spec, dataset)
    if suspect is None:
        built = backdoored(store, spec, dataset, attack, seed, device)
        classifier, poisoned = built.classifier, built.poisoned[POISONED_SPLIT].texts
    else:
        classifier, card = load_model_folder(model_source(suspect)[0])
        classifier.model.to(device)
        poison = known_trigger(card)
        poisoned = () if poison is None else poisoned_split(splits.test, poison, split=POISONED_SPLIT, seed=seed).texts
    clean = defender_clean(spec, splits, seed)
    data, _ = augmented(store, spec, AugFtConfig(augmentation=augmentation, copies=1), clean, seed)
    model, tokenizer = classifier.model, classifier.tokenizer
    length = spec.training.max_length
    rng = np.random.default_rng([seed, PICTURE_STREAM])
    groups = {
        name: cls_vectors(model, tokenizer, subsample(texts, points, rng), max_length=length)
        for name, texts in (("augmented", data.texts), ("clean", clean.texts), ("poisoned", poisoned))
        if texts
    }
    with tempfile.TemporaryDirectory() as folder:
        picture = tsne_png(groups, Path(folder) / "fig.png", title=f"{augmentation} ({dataset}, {attack})", seed=seed)
        png = picture.read_bytes()
    return AugmentationScore(
        dataset=dataset,
        attack=attack,
        augmentation=augmentation,
        seed=seed,
        mean_ce=mean_cross_entropy(model, tokenizer, data, max_length=length),
        n_samples=len(data),
        png=png,
    )


def write_score(run_dir: Path, score: AugmentationScore) -> tuple[Path, Path]:
    """Its row under `<run_dir>/select_aug/` (docs/results-schema.md) and its PNG beside it, atomically."""
    frame = pl.DataFrame([score.row()], schema=SELECT_AUG_SCHEMA)
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    row, picture = (run_dir / "select_aug" / f"{score.stem()}.{suffix}" for suffix in ("parquet", "png"))
    write_atomic(row, buffer.getvalue())
    write_atomic(picture, score.png)
    return row, picture


def selections(scores: Iterable[AugmentationScore]) -> dict[str, dict[str, Any]]:
    """Per `<dataset>/<attack>/<seed>`: every augmentation's mean CE and eq. 9's argmax."""
    grouped: dict[str, dict[str, float]] = {}
    for score in scores:
        grouped.setdefault(f"{score.dataset}/{score.attack}/{score.seed}", {})[score.augmentation] = score.mean_ce
    return {key: {"mean_ce": ce, "selected": most_perturbing(ce)} for key, ce in grouped.items()}


def selection_table(key: str, entry: dict[str, Any]) -> Table:
    """One `selections` entry as a terminal table, eq. 9's argmax in bold."""
    table = Table(title=f"eq. 9 on {key} (mean cross-entropy of M_b, batch 16)")
    table.add_column("augmentation")
    table.add_column("mean CE", justify="right")
    for name, ce in entry["mean_ce"].items():
        table.add_row(name, f"[bold]{ce:.4f}[/]" if name == entry["selected"] else f"{ce:.4f}")
    return table


def write_summary(run_dir: Path, summary: dict[str, dict[str, Any]]) -> Path:
    """The selections as `<run_dir>/select_aug.json`, atomically."""
    path = run_dir / SUMMARY_FILE
    write_atomic(path, json.dumps(summary, indent=2, sort_keys=True).encode())
    return path
