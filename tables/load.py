"""Reading a run's result files lazily, checking them against docs/results-schema.md, listing problems."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

# Columns the tables read, with the type each is cast to; other schema columns are not needed here.
TRIAL_COLUMNS = {
    "dataset": pl.String,
    "attack": pl.String,
    "defense": pl.String,
    "augmentation": pl.String,
    "seed": pl.Int64,
    "status": pl.String,
    "cacc": pl.Float64,
    "asr": pl.Float64,
}
# Read when present, for messages and checks only.
TRIAL_OPTIONAL = {
    "trial_id": pl.String,
    "error": pl.String,
    "model": pl.String,
    "alpha": pl.Float64,
    "beta": pl.Float64,
    "distil_lr": pl.Float64,
    "distil_epochs": pl.Int64,
    "attention_axis": pl.String,
    "tuned_by": pl.String,  # how `tune` chose the MBTSAD rows' settings; absent in rows written before it existed
    "code": pl.String,
    "wall_s": pl.Float64,
}
SELECT_AUG_COLUMNS = {
    "dataset": pl.String,
    "attack": pl.String,
    "augmentation": pl.String,
    "seed": pl.Int64,
    "mean_ce": pl.Float64,
}
TRIAL_KEY = ("dataset", "attack", "defense", "augmentation", "seed")
SELECT_AUG_KEY = ("dataset", "attack", "augmentation", "seed")


class ResultsError(Exception):
    """The run folder holds nothing a table can be made from."""


@dataclass(frozen=True)
class Problem:
    """Something wrong in the results, reported to the user; the rows concerned are left out."""

    kind: str  # unreadable, schema, failed, status, incomplete, duplicate, unplaced, models, code
    message: str


@dataclass(frozen=True)
class Results:
    """The usable rows of a run folder and what was wrong with the rest."""

    trials: pl.DataFrame  # status ok, complete, one row per TRIAL_KEY
    select_aug: pl.DataFrame  # complete, one row per SELECT_AUG_KEY
    problems: tuple[Problem, ...]


def load_results(run_dirs: Sequence[Path]) -> Results:
    """Scan `trials/` and `select_aug/` under one run folder or several; raise ResultsError when nothing is usable.

    Several folders are read as one run: a row whose trial_id and scores repeat a row of another folder is the
    same trial (the id hashes its settings) and counts once; two different results for one cell are duplicates.
    Messages name a file relative to its run folder, under the folder's own path when there are several.
    """
    where = ", ".join(str(folder) for folder in run_dirs)
    problems: list[Problem] = []
    trial_files, aug_files = _result_files(run_dirs, "trials"), _result_files(run_dirs, "select_aug")
    if not trial_files and not aug_files:
        raise ResultsError(f"{where}: no result files (expected trials/*.parquet or select_aug/*.parquet)")
    trials = _scan(trial_files, TRIAL_COLUMNS, TRIAL_OPTIONAL, problems)
    select_aug = _scan(aug_files, SELECT_AUG_COLUMNS, {}, problems)
    if len(run_dirs) > 1:
        trials = trials.unique([*TRIAL_KEY, "trial_id", "cacc", "asr"], keep="first", maintain_order=True)
        select_aug = select_aug.unique([*SELECT_AUG_KEY, "mean_ce"], keep="first", maintain_order=True)
    trials = _usable_trials(trials, problems)
    select_aug = _unique(_complete(select_aug, SELECT_AUG_COLUMNS, problems), SELECT_AUG_KEY, problems)
    if trials.is_empty() and select_aug.is_empty():
        shown = "\n  ".join(problem.message for problem in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ResultsError(f"{where}: no usable result rows; problems found:\n  {shown}{more}")
    return Results(trials=trials, select_aug=select_aug, problems=tuple(problems))


def _result_files(run_dirs: Sequence[Path], subfolder: str) -> list[tuple[Path, str]]:
    """Each `<run dir>/<subfolder>/*.parquet` with its name in messages: relative to its run folder, prefixed
    with the folder when there are several."""
    return [
        (
            path,
            path.relative_to(folder).as_posix()
            if len(run_dirs) == 1
            else f"{folder.as_posix()}/{subfolder}/{path.name}",
        )
        for folder in run_dirs
        for path in sorted((folder / subfolder).glob("*.parquet"))
    ]


def _scan(
    files: list[tuple[Path, str]],
    columns: Mapping[str, type[pl.DataType]],
    optional: Mapping[str, type[pl.DataType]],
    problems: list[Problem],
) -> pl.DataFrame:
    """Check each (file, its name in messages) for its schema, then read the needed columns of the good ones in
    one lazy scan per schema."""
    wanted = {**columns, **optional}
    groups: dict[tuple[tuple[str, pl.DataType], ...], list[tuple[Path, str]]] = {}
    for path, name in files:
        try:
            schema = pl.read_parquet_schema(path)
        except (pl.exceptions.PolarsError, OSError) as error:
            problems.append(Problem("unreadable", f"{name}: not a readable parquet file ({error}); skipped"))
            continue
        issues = _schema_issues(schema, wanted, required=columns)
        if issues:
            problems.append(Problem("schema", f"{name}: {'; '.join(issues)}; skipped"))
            continue
        # Files that share a schema are read by one scan; the few distinct schemas are cast to one.
        groups.setdefault(tuple(schema.items()), []).append((path, name))
    frames = [_read(named_paths, {name for name, _ in schema}, wanted) for schema, named_paths in groups.items()]
    if not frames:
        return pl.DataFrame(schema={**wanted, "file": pl.String})
    return pl.concat(frames).collect()


def _read(
    named_paths: list[tuple[Path, str]], present: set[str], wanted: Mapping[str, type[pl.DataType]]
) -> pl.LazyFrame:
    """Files of one schema as the wanted columns (null where absent) and `file`, each file's name for messages."""
    names = {path.as_posix(): name for path, name in named_paths}
    return pl.scan_parquet([path for path, _ in named_paths], include_file_paths="file").select(
        *(
            pl.col(name).cast(dtype) if name in present else pl.lit(None, dtype).alias(name)
            for name, dtype in wanted.items()
        ),
        pl.col("file").replace_strict(names, return_dtype=pl.String),
    )


def _schema_issues(
    schema: Mapping[str, pl.DataType],
    wanted: Mapping[str, type[pl.DataType]],
    required: Mapping[str, type[pl.DataType]],
) -> list[str]:
    """Missing required columns and columns whose type cannot be read as the schema's type."""
    missing = [name for name in required if name not in schema]
    issues = [f"missing column{'s' * (len(missing) > 1)} {', '.join(missing)}"] if missing else []
    for name, dtype in wanted.items():
        found = schema.get(name)
        if found is None or found == pl.Null:
            continue
        fits = (
            found in (pl.String, pl.Categorical, pl.Enum)
            if dtype == pl.String
            else found.is_integer()
            if dtype == pl.Int64
            else found.is_numeric()
        )
        if not fits:
            issues.append(f"column {name} has type {found}, expected {dtype}")
    return issues


def _usable_trials(rows: pl.DataFrame, problems: list[Problem]) -> pl.DataFrame:
    """Report and drop failed, unknown-status and incomplete trials, then duplicates."""
    for row in rows.filter(pl.col("status") == "failed").iter_rows(named=True):
        problems.append(Problem("failed", f"{row['file']}: {_where(row)} failed: {row['error'] or 'no error message'}"))
    for row in rows.filter(~pl.col("status").is_in(["ok", "failed"]).fill_null(True)).iter_rows(named=True):
        problems.append(
            Problem("status", f"{row['file']}: {_where(row)} has status {row['status']!r}, not ok or failed")
        )
    ok = _complete(rows.filter(pl.col("status") == "ok"), TRIAL_COLUMNS, problems)
    problems.extend(_mixed(ok, "model", "models", "models", "the trials"))
    for (dataset,), rows in ok.group_by("dataset", maintain_order=True):  # datasets may come from different code
        problems.extend(_mixed(rows, "code", "code", "code versions", f"the {dataset} trials"))
    return _unique(ok, TRIAL_KEY, problems)


def _mixed(rows: pl.DataFrame, column: str, kind: str, what: str, whose: str) -> list[Problem]:
    """A `kind` problem when the rows hold more than one value of `column` (the models, the code versions)."""
    values = rows.drop_nulls(column).group_by(column).len().sort(column)
    if values.height < 2:
        return []
    counts = ", ".join(f"{value}: {n}" for value, n in values.iter_rows())
    return [Problem(kind, f"{whose} mix {values.height} {what} ({counts})")]


def _complete(rows: pl.DataFrame, columns: Mapping[str, type[pl.DataType]], problems: list[Problem]) -> pl.DataFrame:
    """Report and drop rows with a null (or NaN) where a value is required."""
    nullable = {"augmentation", "status"}
    checked = [name for name in columns if name not in nullable]
    gaps = pl.concat_list(
        pl.when(_missing(pl.col(name), columns[name])).then(pl.lit(name)).otherwise(None) for name in checked
    ).list.drop_nulls()
    marked = rows.with_columns(gaps.alias("_gaps"))
    for row in marked.filter(pl.col("_gaps").list.len() > 0).iter_rows(named=True):
        problems.append(
            Problem("incomplete", f"{row['file']}: {_where(row)} has no value for {', '.join(row['_gaps'])}")
        )
    return marked.filter(pl.col("_gaps").list.len() == 0).drop("_gaps")


def _missing(column: pl.Expr, dtype: type[pl.DataType]) -> pl.Expr:
    """Null, or NaN for a float column."""
    return column.is_null() | column.is_nan() if dtype == pl.Float64 else column.is_null()


def _unique(rows: pl.DataFrame, key: tuple[str, ...], problems: list[Problem]) -> pl.DataFrame:
    """Report every key that occurs more than once and drop all its rows: which one is right is unknown."""
    counted = rows.with_columns(pl.len().over(key).alias("_n"))
    repeated = counted.filter(pl.col("_n") > 1)
    for group in repeated.group_by(key, maintain_order=True).agg(pl.col("file")).iter_rows(named=True):
        problems.append(
            Problem(
                "duplicate",
                f"{_where(group)} appears {len(group['file'])} times ({', '.join(group['file'])}); all left out",
            )
        )
    return counted.filter(pl.col("_n") == 1).drop("_n")


def _where(row: Mapping[str, object]) -> str:
    """A row's cell in words, e.g. `sst2/badnets/mbtsad/ts seed 0`."""
    parts = [row.get(name) for name in ("dataset", "attack", "defense", "augmentation")]
    return "/".join(str(part) for part in parts if part is not None) + f" seed {row.get('seed')}"
