"""The fidelity study's result files (`study/*.parquet`) as per-epoch line charts and a Markdown table.

Each line is one (profile, regime), and in MBTSAD's panel one distillation rate too: ASR solid, clean test
accuracy dashed, one panel per stage (TS-FT, the teacher; MBTSAD's distillation), epoch 0 being M_b itself.
Test scores are a diagnosis: the epoch a run keeps (by clean dev accuracy) is ringed. The table gives, per
line and stage, the kept epoch's scores as mean ± standard deviation over seeds, and the swing: the largest
epoch-to-epoch change of ASR.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tables.build import write_atomic

LINE = ("attack", "profile", "regime", "base_lr", "distil_lr")  # distil_lr: null but for MBTSAD
TRAINED = ("ts-ft", "mbtsad")
STAGE_ORDER = {"none": 0, "ts-ft": 1, "mbtsad": 2}  # M_b, then the teacher, then the distillation


def read_study(run_dir: Path) -> pl.DataFrame:
    """Every study row under `<run_dir>/study/`, once: a cell studied again with other distillation rates
    repeats its M_b and teacher rows (same seed, same run), which count once. An error names a folder
    without rows."""
    files = sorted((run_dir / "study").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{run_dir / 'study'}: no study result files (*.parquet)")
    rows = pl.concat([pl.read_parquet(file) for file in files], how="diagonal_relaxed")
    return rows.unique(subset=["dataset", *LINE, "stage", "seed", "epoch"], keep="first", maintain_order=True)


def swings(rows: pl.DataFrame) -> pl.DataFrame:
    """Per line, stage and seed: the largest |ASR(e) - ASR(e-1)| over the trained epochs."""
    trained = rows.filter(pl.col("stage").is_in(TRAINED)).sort([*LINE, "stage", "seed", "epoch"])
    return (
        trained.with_columns(pl.col("asr").diff().abs().over([*LINE, "stage", "seed"]).alias("step"))
        .group_by([*LINE, "stage", "seed"])
        .agg(pl.col("step").max().alias("swing"), pl.col("epoch").max().alias("epochs"))
    )


def summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per line and stage: the kept epoch's CACC and ASR, mean and std over seeds, the swing, the epochs trained."""
    kept = rows.filter(pl.col("selected")).join(swings(rows), on=[*LINE, "stage", "seed"], how="left", nulls_equal=True)
    return (
        kept.group_by([*LINE, "stage"])
        .agg(
            pl.len().alias("seeds"),
            *(pl.col(m).mean().alias(f"{m}_mean") for m in ("cacc", "asr", "clean_flip", "swing")),
            *(pl.col(m).std().alias(f"{m}_std") for m in ("cacc", "asr")),
            pl.col("epoch").mean().alias("kept_epoch"),
            pl.col("epochs").mean().alias("epochs"),
        )
        .sort([*LINE, pl.col("stage").replace_strict(STAGE_ORDER, default=len(STAGE_ORDER))])
    )


def _cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _stage(row: dict) -> str:
    return row["stage"] if row["distil_lr"] is None else f"{row['stage']} ({row['distil_lr']:g})"


def markdown(rows: pl.DataFrame) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| attack | profile | rates (base lr) | stage (distillation lr) | seeds | CACC | ASR | clean flip | kept "
        "| epochs | swing |",
        "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in summary(rows).iter_rows(named=True):
        lines.append(
            f"| {r['attack']} | {r['profile']} | {r['regime']} ({r['base_lr']:g}) | {_stage(r)} | {r['seeds']} | "
            f"{_cell(r['cacc_mean'], r['cacc_std'])} | {_cell(r['asr_mean'], r['asr_std'])} | "
            f"{_cell(r['clean_flip_mean'], None)} | {r['kept_epoch']:.1f} | "
            f"{_cell(r['epochs'], None)} | {_cell(r['swing_mean'], None)} |"
        )
    return "\n".join(lines) + "\n"


def chart(rows: pl.DataFrame, attack: str) -> bytes:
    """One attack's lines: ASR (solid) and CACC (dashed) against epoch, a panel per stage; mean over seeds."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    ours = rows.filter(pl.col("attack") == attack)
    start = ours.filter(pl.col("stage") == "none")
    palette = ["#cb181d", "#2171b5", "#238b45", "#6a51a3", "#d94801", "#525252"]
    setting = ("profile", "regime", "base_lr")  # one colour each, in both panels; a marker per distillation rate
    settings = start.select(setting).unique().sort(setting).rows()
    colors = {key: palette[i % len(palette)] for i, key in enumerate(settings)}
    rates = sorted(ours["distil_lr"].drop_nulls().unique())
    markers = {rate: "osD^v*"[i % 6] for i, rate in enumerate(rates)}
    for ax, stage in zip(axes, TRAINED, strict=True):
        stage_rows = ours.filter(pl.col("stage") == stage)
        keys = [k for k in LINE[1:] if stage == "mbtsad" or k != "distil_lr"]
        for line in stage_rows.select(keys).unique().sort(keys).iter_rows(named=True):
            color = colors.get(tuple(line[k] for k in setting), palette[-1])
            marker = markers.get(line.get("distil_lr"), "o")
            label = f"{line['profile']}, {line['regime']} ({line['base_lr']:g})"
            if line.get("distil_lr") is not None:
                label += f", distil {line['distil_lr']:g}"
            origin = start.filter(*(pl.col(k) == line[k] for k in ("profile", "regime", "base_lr")))
            epochs = stage_rows.filter(*(pl.col(k) == v for k, v in line.items()))
            curve = (  # both stages start from M_b: epoch 0
                pl.concat([origin, epochs], how="diagonal_relaxed")
                .group_by("epoch")
                .agg(pl.col("asr").mean(), pl.col("cacc").mean(), pl.col("selected").any())
                .sort("epoch")
            )
            ax.plot(curve["epoch"], curve["asr"], color=color, marker=marker, markersize=4, label=label)
            ax.plot(curve["epoch"], curve["cacc"], color=color, linestyle="--", linewidth=1)
            kept = curve.filter(pl.col("selected") & (pl.col("epoch") > 0))
            ax.scatter(kept["epoch"], kept["asr"], s=70, facecolors="none", edgecolors=color)
        ax.legend(fontsize=7, loc="lower left")
    for ax, stage in zip(axes, TRAINED, strict=True):
        ax.set_title({"ts-ft": "TS-FT (the teacher)", "mbtsad": "MBTSAD distillation"}[stage])
        ax.set_xlabel("epoch (0: the backdoored model)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("test ASR % (solid), CACC % (dashed)")
    figure.suptitle(f"{attack}: per-epoch diagnosis on test (mean over seeds); ringed: the epoch kept by clean dev")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def write_study_report(run_dir: Path, out: Path) -> list[Path]:
    """`study.md` and one `study-<attack>.png` per attack under `out`, written atomically."""
    rows = read_study(run_dir)
    written = [out / "study.md"]
    write_atomic(written[0], markdown(rows).encode())
    for attack in sorted(rows["attack"].unique()):
        path = out / f"study-{attack}.png"
        write_atomic(path, chart(rows, attack))
        written.append(path)
    return written
