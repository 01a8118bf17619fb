"""A run folder in; every table, figure and the problem list out, each file written atomically."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tables.aggregate import CE_CELL, CE_METRICS, TRIAL_CELL, TRIAL_METRICS, stats, summarize
from tables.figures import Bar, defense_chart
from tables.grid import Grid, Lookup, ce_grid, metric_grid, ordered, weights_note
from tables.latex import latex_document, latex_table
from tables.layout import ATTACKS, DATASETS, FIGURE_ROWS, PAPER_ATTACKS, PAPER_DATASETS, TABLES
from tables.load import Problem, load_results
from tables.markdown import markdown_table
from tables.paired import paired_differences, paired_markdown, paired_summary
from tables.wall import wall_time_markdown, wall_time_summary


@dataclass(frozen=True)
class Report:
    """What write_tables made and what it found wrong."""

    files: tuple[Path, ...]  # every file written
    problems: tuple[Problem, ...]  # rows left out and why; empty when the results were clean
    grids: tuple[Grid, ...]  # Tables I-IV, then the eq. 9 table
    markdown: str  # the Markdown of every table, as in tables.md


def write_tables(results_dirs: Path | str | Sequence[Path | str], out_dir: Path | str) -> Report:
    """Read a run folder's results (several folders read as one run) and write the paper's tables (LaTeX,
    Markdown) and bar charts.

    Raises tables.load.ResultsError when the folders hold no usable result.
    """
    folders = [results_dirs] if isinstance(results_dirs, (Path, str)) else results_dirs
    results = load_results([Path(folder) for folder in folders])
    problems = (*results.problems, *_unplaced(results.trials))
    summary = summarize(results.trials, TRIAL_CELL, TRIAL_METRICS)
    lookups = {metric: stats(summary, TRIAL_CELL, metric) for metric in TRIAL_METRICS}
    datasets = ordered(results.trials["dataset"], DATASETS, PAPER_DATASETS)
    attacks = ordered(results.trials["attack"], ATTACKS, PAPER_ATTACKS)
    ce_summary = summarize(results.select_aug, CE_CELL, CE_METRICS)
    grids = (
        *(metric_grid(spec, lookups, datasets, attacks, weights_note(results.trials, attacks)) for spec in TABLES),
        ce_grid(stats(ce_summary, CE_CELL, "mean_ce")),
    )
    latex = [latex_table(grid) for grid in grids]
    markdown = "\n".join(markdown_table(grid) for grid in grids)
    outputs: dict[str, str | bytes] = {f"{grid.key}.tex": text for grid, text in zip(grids, latex, strict=True)}
    outputs["tables.tex"] = latex_document(latex)
    outputs["tables.md"] = markdown
    outputs["summary.csv"] = summary.write_csv()
    outputs["summary-eq9.csv"] = ce_summary.write_csv()
    paired = paired_summary(paired_differences(results.trials))
    outputs["paired.csv"] = paired.write_csv()
    outputs["paired.md"] = paired_markdown(paired)
    wall = wall_time_summary(results.trials)
    outputs["wall.csv"] = wall.write_csv()
    outputs["wall.md"] = wall_time_markdown(wall)
    outputs["problems.txt"] = "".join(f"{problem.message}\n" for problem in problems) or "No problems found.\n"
    for dataset, attack in summary.select("dataset", "attack").unique().sort(["dataset", "attack"]).iter_rows():
        bars = _bars(lookups, dataset, attack)
        if bars:
            title = f"{DATASETS.get(dataset, dataset)}, {ATTACKS.get(attack, attack)}"
            outputs[f"figures/{_file_name(dataset)}-{_file_name(attack)}.png"] = defense_chart(title, bars)
    out = Path(out_dir)
    files = tuple(write_atomic(out / name, content) for name, content in outputs.items())
    return Report(files=files, problems=problems, grids=grids, markdown=markdown)


def _unplaced(trials: pl.DataFrame) -> list[Problem]:
    """Usable trials that no table or figure row shows: an unknown defense or a mismatched augmentation."""
    placed = {(row.defense, row.augmentation) for row in FIGURE_ROWS}
    counts = trials.group_by("defense", "augmentation").len().sort("defense", "augmentation")
    return [
        Problem(
            "unplaced",
            f"{n} trial(s) with defense {defense!r} and augmentation {augmentation!r} fit no table row "
            "(see tables/layout.py); not shown",
        )
        for defense, augmentation, n in counts.iter_rows()
        if (defense, augmentation) not in placed
    ]


def _bars(lookups: dict[str, Lookup], dataset: str, attack: str) -> list[Bar]:
    """The figure rows that have both metrics for this dataset and attack."""
    bars = []
    for row in FIGURE_ROWS:
        key = (dataset, attack, row.defense, row.augmentation)
        cacc, asr = lookups["cacc"].get(key), lookups["asr"].get(key)
        if cacc is not None and asr is not None:
            bars.append(Bar(row.label, cacc, asr, reference=not row.defended, ours=row.defense == "mbtsad"))
    return bars


def _file_name(name: str) -> str:
    """A dataset or attack name made safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content.encode() if isinstance(content, str) else content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
