"""Fig. 3's picture: a t-SNE of [CLS] vectors of the augmented, clean and poisoned sets, as a PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from orchestration.store import write_atomic

COLOURS = {"augmented": "tab:blue", "clean": "tab:green", "poisoned": "tab:red"}  # Fig. 3's colours


def tsne_png(groups: dict[str, np.ndarray], path: Path, *, title: str, seed: int) -> Path:
    """Project every group's vectors together with t-SNE and scatter them by group, written atomically."""
    names = [name for name, vectors in groups.items() if len(vectors)]
    if not names:
        raise ValueError("no vectors to project")
    stacked = np.concatenate([groups[name] for name in names])
    perplexity = float(min(30, max(2, (len(stacked) - 1) // 3)))
    points = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(stacked)
    figure = Figure(figsize=(5, 5), dpi=120)
    axes = figure.add_subplot()
    start = 0
    for name in names:
        end = start + len(groups[name])
        axes.scatter(*points[start:end].T, s=6, alpha=0.6, label=name, color=COLOURS.get(name))
        start = end
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="best", markerscale=2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
    return path
