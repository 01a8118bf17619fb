"""Bar charts of CACC and ASR per defense for one dataset and attack, as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

# The object-oriented Figure renders with Agg on savefig and leaves pyplot's global backend alone.
from matplotlib.figure import Figure

from tables.aggregate import Stat

_COLORS = {"cacc": ("#9ecae1", "#2171b5"), "asr": ("#fcae91", "#cb181d")}  # (other, ours) per metric
_REFERENCE = "#bdbdbd"


@dataclass(frozen=True)
class Bar:
    """One defense's pair of bars."""

    label: str
    cacc: Stat
    asr: Stat
    reference: bool  # the undefended model: grey, and a dashed line through both panels
    ours: bool  # MBTSAD: the saturated colour


def defense_chart(title: str, bars: Sequence[Bar]) -> bytes:
    """Two panels sharing the defense axis: CACC (higher is better) and ASR (lower is better)."""
    figure = Figure(figsize=(9, 1.6 + 0.32 * len(bars)), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    rows = range(len(bars))
    spread = any(bar.cacc.std is not None or bar.asr.std is not None for bar in bars)
    panels = (("cacc", "CACC (%), higher is better"), ("asr", "ASR (%), lower is better"))
    for ax, (metric, xlabel) in zip(axes, panels, strict=True):
        stats = [getattr(bar, metric) for bar in bars]
        other, ours = _COLORS[metric]
        colors = [_REFERENCE if bar.reference else ours if bar.ours else other for bar in bars]
        drawn = ax.barh(
            rows,
            [stat.mean for stat in stats],
            xerr=[stat.std or 0.0 for stat in stats] if spread else None,
            color=colors,
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
        ax.bar_label(drawn, labels=[f"{stat.mean:.2f}" for stat in stats], padding=4, fontsize=7)
        for bar, stat in zip(bars, stats, strict=True):
            if bar.reference:
                ax.axvline(stat.mean, color="#636363", linestyle="--", linewidth=0.8)
        # Room right of the longest bar (and whisker) for its label.
        ax.set_xlim(0, max(112, *(stat.mean + (stat.std or 0.0) + 12 for stat in stats)))
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_yticks(rows, [bar.label for bar in bars])
    axes[0].invert_yaxis()
    what = "mean over seeds; whiskers: sample standard deviation" if spread else "one seed"
    figure.suptitle(f"{title}\n{what}; dashed line: no defense")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130)
    return buffer.getvalue()
