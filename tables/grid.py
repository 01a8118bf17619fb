"""Tables as cells: which value goes where, which cells are bold, and the notes under each table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from tables.aggregate import Stat
from tables.layout import (
    ATTACKS,
    AUGMENTATIONS,
    BOLD_NOTE,
    CE_KEY,
    CE_NOTE,
    CE_TITLE,
    DATASETS,
    PAPER_ATTACKS,
    PAPER_DATASETS,
    WEIGHTS_NOTE,
    TableSpec,
)

# (result column, header, which end is best) for the metric tables.
METRICS = (("cacc", "CACC", max), ("asr", "ASR", min))
# tuned distillation settings a row may carry (docs/results-schema.md), and how tune chose them, as the weights
# note words them
TUNED_EXTRAS = {
    "distil_lr": "distillation lr {:.3g}",
    "distil_epochs": "{} epochs",
    "attention_axis": "attention axis {}",
    "tuned_by": "tuned by {}",
}
# after the note when a row says how its settings were chosen (`tuned_by`, orchestration/tuning.py's objectives)
TUNED_BY_NOTE = (
    " Tuned by oracle: scored on dev with the attacker's own trigger, which a defender never knows; by proxy: with "
    "a backdoor the defender planted itself; from: on the named attacks' models, the row's own left out."
)
PERCENT_DECIMALS = 2  # as the paper prints CACC and ASR
CE_DECIMALS = 4  # as the paper prints the eq. 9 loss (0.5333): two would tie most augmentations
Lookup = Mapping[tuple[str | None, ...], Stat]
Best = Callable[[list[float]], float]


@dataclass(frozen=True)
class Cell:
    """One number of a table, or a missing one."""

    stat: Stat | None  # None: no usable result for this cell
    bold: bool = False


@dataclass(frozen=True)
class Line:
    """One row of a table."""

    label: str
    mark: str | None  # footnote letter
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Block:
    """The rows of one attack (or the whole table when it has no attack column)."""

    label: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Grid:
    """A table ready to render: headers, blocks of rows, notes."""

    key: str  # output file stem
    heading: str  # e.g. "Table II"
    title: str
    block_header: str | None  # header of the block-label column; None: no such column
    row_header: str
    groups: tuple[str, ...]  # column groups (datasets), each holding `columns`
    show_groups: bool  # False when the title already names the only group
    columns: tuple[str, ...]
    blocks: tuple[Block, ...]
    notes: tuple[tuple[str | None, str], ...]  # (footnote letter or None, text)
    decimals: int
    seeds: int | None  # the usual seed count; a cell with another count says so


def ordered(present: Iterable[str], names: Mapping[str, str], always: Sequence[str]) -> tuple[str, ...]:
    """Keys in the paper's order (always-shown first), then any others present, sorted."""
    keys = set(present)
    known = [key for key in names if key in keys and key not in always]
    return (*always, *known, *sorted(keys - set(always) - set(names)))


def metric_grid(
    spec: TableSpec,
    lookups: Mapping[str, Lookup],
    datasets: Sequence[str],
    attacks: Sequence[str],
    weights: str | None = None,
) -> Grid:
    """One of Tables I-IV: per attack, a block of the spec's rows; CACC and ASR per dataset. `weights` is the
    note on the eq. 1 weights the MBTSAD rows ran with (see `weights_note`)."""
    shown = spec.datasets or tuple(datasets)
    directions = [best for _ in shown for _, _, best in METRICS]
    blocks = tuple(
        _block(
            ATTACKS.get(attack, attack),
            [(row.label, row.mark if index == 0 else None) for row in spec.rows],
            [
                [
                    lookups[metric].get((dataset, attack, row.defense, row.augmentation))
                    for dataset in shown
                    for metric, _, _ in METRICS
                ]
                for row in spec.rows
            ],
            [row.defended for row in spec.rows],
            directions,
            decimals=PERCENT_DECIMALS,
        )
        for index, attack in enumerate(attacks)
    )
    seeds, seeds_note = _seeds(blocks)
    return Grid(
        key=spec.key,
        heading=f"Table {spec.number}",
        title=spec.title,
        block_header="Attack",
        row_header=spec.row_header,
        groups=tuple(DATASETS.get(dataset, dataset) for dataset in shown),
        show_groups=spec.datasets is None,
        columns=tuple(header for _, header, _ in METRICS),
        blocks=blocks,
        notes=(*spec.notes, *seeds_note, (None, BOLD_NOTE), *([(None, weights)] if spec.weighted and weights else [])),
        decimals=PERCENT_DECIMALS,
        seeds=seeds,
    )


def weights_note(trials: pl.DataFrame, attacks: Sequence[str]) -> str | None:
    """The alpha and beta each attack's MBTSAD-family rows ran with (every distinct pair), any tuned distillation
    setting and how tune chose them in brackets after them, or None without such rows."""
    rows = trials.filter(pl.col("alpha").is_not_null() | pl.col("beta").is_not_null())
    extras = [name for name in TUNED_EXTRAS if name in rows.columns]
    values = []
    for attack in attacks:
        runs = rows.filter(pl.col("attack") == attack).select("alpha", "beta", *extras).unique()
        if len(runs):
            shown = " or ".join(_as_run(run) for run in runs.sort(runs.columns, nulls_last=True).iter_rows(named=True))
            values.append(f"{ATTACKS.get(attack, attack)} {shown}")
    if not values:
        return None
    labelled = "tuned_by" in rows.columns and rows["tuned_by"].is_not_null().any()
    return WEIGHTS_NOTE.format(values="; ".join(values)) + (TUNED_BY_NOTE if labelled else "")


def _as_run(run: dict[str, Any]) -> str:
    """`1.6, 2.72`, then `(distillation lr 0.001, 3 epochs, attention axis row)` for what was tuned."""
    extras = [TUNED_EXTRAS[k].format(v) for k, v in run.items() if k in TUNED_EXTRAS and v is not None]
    return f"{_weight(run['alpha'])}, {_weight(run['beta'])}" + (f" ({', '.join(extras)})" if extras else "")


def _weight(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def ce_grid(lookup: Lookup) -> Grid:
    """The eq. 9 table: mean cross-entropy per augmentation (rows) and dataset and attack (columns)."""
    datasets = ordered({key[0] for key in lookup}, DATASETS, ()) or PAPER_DATASETS[:1]
    attacks = ordered({key[1] for key in lookup}, ATTACKS, ()) or PAPER_ATTACKS
    augmentations = ordered({key[2] for key in lookup}, AUGMENTATIONS, tuple(AUGMENTATIONS))
    block = _block(
        "",
        [(AUGMENTATIONS.get(augmentation, augmentation), None) for augmentation in augmentations],
        [
            [lookup.get((dataset, attack, augmentation)) for dataset in datasets for attack in attacks]
            for augmentation in augmentations
        ],
        [True] * len(augmentations),
        [max] * (len(datasets) * len(attacks)),
        decimals=CE_DECIMALS,
    )
    seeds, seeds_note = _seeds([block])
    return Grid(
        key=CE_KEY,
        heading="Eq. 9",
        title=CE_TITLE,
        block_header=None,
        row_header="Augmentation",
        groups=tuple(DATASETS.get(dataset, dataset) for dataset in datasets),
        show_groups=True,
        columns=tuple(ATTACKS.get(attack, attack) for attack in attacks),
        blocks=(block,),
        notes=((None, CE_NOTE), *seeds_note),
        decimals=CE_DECIMALS,
        seeds=seeds,
    )


def cell_text(cell: Cell, grid: Grid, *, plus_minus: str, dash: str) -> str:
    """A cell as `mean`, `mean ± std`, either with `(n=k)` when its seed count is unusual, or a dash."""
    if cell.stat is None:
        return dash
    text = f"{cell.stat.mean:.{grid.decimals}f}"
    if cell.stat.std is not None:
        text += f"{plus_minus}{cell.stat.std:.{grid.decimals}f}"
    if cell.stat.n != grid.seeds:
        text += f" (n={cell.stat.n})"
    return text


def _block(
    label: str,
    heads: Sequence[tuple[str, str | None]],
    values: Sequence[Sequence[Stat | None]],
    candidates: Sequence[bool],
    directions: Sequence[Best],
    *,
    decimals: int,
) -> Block:
    """Rows of cells, bolding per column the best shown mean among the candidate rows (all ties)."""

    def shown(stat: Stat) -> float:
        # Compare what the reader sees, so two cells that print the same are both bold or neither.
        return float(f"{stat.mean:.{decimals}f}")

    best = []
    for column, direction in enumerate(directions):
        means = [
            shown(row[column]) for row, ok in zip(values, candidates, strict=True) if ok and row[column] is not None
        ]
        best.append(direction(means) if means else None)
    return Block(
        label=label,
        lines=tuple(
            Line(
                label=row_label,
                mark=mark,
                cells=tuple(
                    Cell(stat, bold=ok and stat is not None and shown(stat) == best[column])
                    for column, stat in enumerate(row)
                ),
            )
            for (row_label, mark), row, ok in zip(heads, values, candidates, strict=True)
        ),
    )


def _seeds(blocks: Iterable[Block]) -> tuple[int | None, list[tuple[None, str]]]:
    """The usual seed count of a table's cells, and the note saying what the numbers are."""
    counts = Counter(cell.stat.n for block in blocks for line in block.lines for cell in line.cells if cell.stat)
    if not counts:
        return None, []
    seeds = max(counts, key=lambda n: (counts[n], n))
    text = "One seed per cell" if seeds == 1 else f"Mean ± sample standard deviation over {seeds} seeds"
    if len(counts) > 1:
        text += "; (n=k): mean ± sample standard deviation over k seeds" if seeds == 1 else "; (n=k): over k seeds"
    return seeds, [(None, f"{text}.")]
