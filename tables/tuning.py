"""The tune trials (`tune_trials.parquet`) as Markdown: per study, its objective (`tuned_by`) and every finished trial
from best to worst; "defended" is the model MBTSAD ran on, M_b (oracle) or M_b with the defender's backdoor (proxy)."""

from __future__ import annotations

import polars as pl

SETTINGS = ("alpha", "beta", "distil_lr", "distil_epochs", "attention_axis")
SCORES = ("dev_cacc", "dev_asr", "reference_cacc", "reference_asr", "objective")
HEADERS = {
    "distil_lr": "distillation lr",
    "distil_epochs": "epochs",
    "attention_axis": "eq. 4 axis",
    "dev_cacc": "dev CACC",
    "dev_asr": "dev ASR",
    "reference_cacc": "defended dev CACC",  # M_b's (oracle) or the proxy model's
    "reference_asr": "defended dev ASR",
}


def _text(value: object) -> str:
    if value is None:
        return "spec"  # not searched in that trial: the spec's value ran
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.1 else f"{value:.2f}"
    return str(value)


def tuning_markdown(trials: pl.DataFrame) -> str:
    """A section per study: how many trials finished and failed, then the finished ones by objective."""
    lines: list[str] = []
    for (study,), rows in trials.sort("study").group_by("study", maintain_order=True):
        done = rows.filter(pl.col("status") == "ok").sort("objective")
        others = rows.height - done.height
        label = ", ".join(rows["tuned_by"].unique(maintain_order=True).to_list())
        lines += [
            f"### {study}",
            "",
            f"{done.height} trials finished, {others} failed or unfinished; tuned by {label}.",
            "",
        ]
        if done.is_empty():
            continue
        columns = ("rank", *SETTINGS, *SCORES)
        lines.append("| " + " | ".join(HEADERS.get(c, c) for c in columns) + " |")
        lines.append("|" + "|".join("---" if c == "attention_axis" else "--:" for c in columns) + "|")
        for rank, row in enumerate(done.iter_rows(named=True), start=1):
            lines.append("| " + " | ".join([str(rank), *(_text(row[c]) for c in (*SETTINGS, *SCORES))]) + " |")
        lines.append("")
    return "\n".join(lines)
