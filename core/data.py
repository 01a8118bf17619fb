"""Datasets: the shipped SST-2 and IMDb files, a user's own files, D_c and poisoned evaluation sets."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_ENV = "MBTSAD_DATA"
TEXT_COLUMNS = ("text", "sentence")  # accepted names of the text column, in order of preference
LABEL_COLUMN = "label"


class DataFileError(ValueError):
    """A data file that cannot be read as labelled text; the message names the file and line."""

    def __init__(self, path: Path | str, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels; samples are rows, never positional tuples."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    name: str = "data"

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int] | tuple[int, ...] | np.ndarray, name: str | None = None) -> TextDataset:
        """The rows at `indices`, in that order."""
        return TextDataset(
            texts=tuple(self.texts[int(i)] for i in indices),
            labels=tuple(self.labels[int(i)] for i in indices),
            name=name or self.name,
        )


@dataclass(frozen=True)
class Splits:
    """A task's train, dev and (labelled) test sets."""

    train: TextDataset
    dev: TextDataset
    test: TextDataset


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The shared data folder: the argument, then $MBTSAD_DATA, then ../shared/data beside the checkout."""
    candidates: list[Path] = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    elif os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]))
    else:
        repo = Path(__file__).resolve().parents[1]
        candidates += [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"data folder not found (tried {tried}); pass --data-dir or set ${DATA_ENV} to the folder that "
        "holds sst2/, imdb/ and bert-base-uncased/"
    )


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataFileError(path, f"not a readable gzip file ({err})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataFileError(path, f"bytes that are not UTF-8 ({err.reason} at byte {err.start})", line) from None


def _label(value: object, path: Path, line: int, num_labels: int) -> int:
    text = str(value).strip()
    try:
        label = int(text)
    except ValueError:
        raise DataFileError(path, f"label {text!r} is not an integer", line) from None
    if isinstance(value, float) or not 0 <= label < num_labels:
        raise DataFileError(path, f"label {text!r} is outside 0..{num_labels - 1}", line)
    return label


def _rows(path: Path, text_column: str | None) -> tuple[list[tuple[int, dict[str, object]]], str]:
    """(line, row) pairs of a CSV/TSV/JSONL file, and the text column's name."""
    content = _decode(path)
    if not content.strip():
        raise DataFileError(path, "the file is empty")
    stem = path.name.removesuffix(".gz")
    rows: list[tuple[int, dict[str, object]]] = []
    if stem.endswith(".jsonl"):
        for number, line in enumerate(content.split("\n"), start=1):  # splitlines also breaks at U+2028 and kin
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(path, f"not a JSON object ({err.msg})", number) from None
            if not isinstance(row, dict):
                raise DataFileError(path, "not a JSON object", number)
            rows.append((number, row))
        columns = set().union(*(row.keys() for _, row in rows)) if rows else set()
    elif stem.endswith((".csv", ".tsv")):
        tsv = stem.endswith(".tsv")
        # A long document is one long field (the tokenizer truncates it later); csv's limit is process-wide,
        # so it is only ever raised, to what this file could hold.
        csv.field_size_limit(max(csv.field_size_limit(), len(content)))
        reader = csv.reader(
            io.StringIO(content, newline=""),
            delimiter="\t" if tsv else ",",
            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
        )
        try:  # reader.line_num counts the file's lines read so far, so a row's number is its (last) line's
            header = next(reader, [])
            columns = set(header)
            for fields in reader:
                if not fields:  # a blank line
                    continue
                if len(fields) != len(header):
                    raise DataFileError(path, f"expected {len(header)} fields, got {len(fields)}", reader.line_num)
                rows.append((reader.line_num, dict(zip(header, fields, strict=True))))
        except csv.Error as err:
            raise DataFileError(path, f"malformed row ({err})", reader.line_num) from None
    else:
        raise DataFileError(path, "unknown format: use .csv, .tsv or .jsonl (optionally .gz)")
    if not rows:
        raise DataFileError(path, "the file has no data rows")
    name = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    missing = [c for c in (name, LABEL_COLUMN) if c is None or c not in columns]
    if missing:
        wanted = name or " or ".join(TEXT_COLUMNS)
        raise DataFileError(
            path, f"missing column(s) {', '.join(str(m or wanted) for m in missing)}; found {sorted(columns)}"
        )
    assert name is not None
    return rows, name


def read_labelled_file(
    path: str | Path, *, text_column: str | None = None, num_labels: int = 2, name: str | None = None
) -> TextDataset:
    """Read a CSV/TSV/JSONL file (optionally gzipped) with a text column and an integer label column."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "no such file")
    rows, column = _rows(path, text_column)
    texts: list[str] = []
    labels: list[int] = []
    for line, row in rows:
        text = row.get(column)
        if not isinstance(text, str) or not text.strip():
            raise DataFileError(path, f"empty text in column {column!r}", line)
        texts.append(text.rstrip("\r\n").strip())
        labels.append(_label(row.get(LABEL_COLUMN), path, line, num_labels))
    return TextDataset(texts=tuple(texts), labels=tuple(labels), name=name or path.name.split(".")[0])


def stratified_split(
    dataset: TextDataset, fraction: float, rng: np.random.Generator
) -> tuple[TextDataset, TextDataset]:
    """Split into (a share `fraction` of each label, the rest), both keeping the original order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(dataset.labels)
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = round(fraction * len(members))
        chosen.extend(rng.permutation(members)[:take].tolist())
    picked = np.zeros(len(dataset), dtype=bool)
    picked[chosen] = True
    return (
        dataset.subset(np.flatnonzero(picked), name=dataset.name),
        dataset.subset(np.flatnonzero(~picked), name=dataset.name),
    )


def fewest_to_split(fraction: float) -> int:
    """The fewest rows of one label from which `stratified_split(fraction)` takes one and leaves one."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return next(n for n in itertools.count(2) if 1 <= round(fraction * n) < n)


def clean_subset(dataset: TextDataset, fraction: float, rng: np.random.Generator) -> TextDataset:
    """The defender's clean data D_c: a stratified share r of the clean training set."""
    return stratified_split(dataset, fraction, rng)[0]


def first_words(dataset: TextDataset, max_words: int) -> TextDataset:
    """Each text cut to its first `max_words` whitespace-separated words, joined by single spaces; a text
    that is no longer stays byte for byte. Cut before poisoning, a long review keeps every inserted trigger
    inside the window a model truncating at its first tokens reads."""
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")

    def cut(text: str) -> str:
        words = text.split()
        return text if len(words) <= max_words else " ".join(words[:max_words])

    return TextDataset(tuple(cut(text) for text in dataset.texts), dataset.labels, dataset.name)


def non_target(dataset: TextDataset, target: int) -> TextDataset:
    """The samples whose label is not the attack's target."""
    return dataset.subset([i for i, y in enumerate(dataset.labels) if y != target])


def poisoned_eval_set(
    dataset: TextDataset,
    insert_trigger: Callable[[str, np.random.Generator], str],
    *,
    target: int,
    rng: np.random.Generator,
) -> TextDataset:
    """Non-target samples with the trigger inserted; labels stay the true ones, so ASR counts target hits."""
    victims = non_target(dataset, target)
    return TextDataset(
        texts=tuple(insert_trigger(text, rng) for text in victims.texts),
        labels=victims.labels,
        name=f"{dataset.name}-poisoned",
    )


def load_sst2(data_dir: str | Path | None = None, *, split: str = "openbackdoor") -> Splits:
    """SST-2: the OpenBackdoor split (6,920/872/1,821) or the GLUE one (67,349/872, dev as test)."""
    root = resolve_data_dir(data_dir) / "sst2" / split
    if split == "openbackdoor":
        files = {s: root / f"{s}.tsv" for s in ("train", "dev", "test")}
    elif split == "glue":
        files = {"train": root / "train.tsv", "dev": root / "dev.tsv", "test": root / "dev.tsv"}
    else:
        raise ValueError(f"unknown SST-2 split {split!r}; valid: openbackdoor, glue")
    sets = {s: read_labelled_file(f, name=f"sst2-{s}") for s, f in files.items()}
    return Splits(train=sets["train"], dev=sets["dev"], test=sets["test"])


IMDB_DEV_FRACTION = 0.1  # share of IMDb train held out as dev (stratified), since IMDb ships none
IMDB_DEV_SEED = 0  # fixed, so every run and seed shares one dev set
IMDB_ORDER_SEED = 0  # IMDb's files are sorted by label: its splits are read in this fixed shuffled order


def imdb_order(splits: Splits) -> Splits:
    """IMDb's splits in one fixed shuffled order, so that the first N reviews of each (`data.max_train`,
    `max_dev`, `max_test`) hold both labels in about equal shares, as SST-2's do."""
    rng = np.random.default_rng(IMDB_ORDER_SEED)
    train, dev, test = (rng.permutation(len(part)).tolist() for part in (splits.train, splits.dev, splits.test))
    return Splits(train=splits.train.subset(train), dev=splits.dev.subset(dev), test=splits.test.subset(test))


def load_imdb(data_dir: str | Path | None = None) -> Splits:
    """IMDb: 25,000 train (of which a fixed 10% becomes dev) and 25,000 test reviews."""
    root = resolve_data_dir(data_dir) / "imdb"
    train = read_labelled_file(root / "train.csv.gz", name="imdb-train")
    test = read_labelled_file(root / "test.csv.gz", name="imdb-test")
    dev, rest = stratified_split(train, IMDB_DEV_FRACTION, np.random.default_rng(IMDB_DEV_SEED))
    return imdb_order(Splits(train=rest, dev=TextDataset(dev.texts, dev.labels, "imdb-dev"), test=test))


HUB_NAMES = {"sst2": ("glue", "sst2"), "imdb": ("imdb", None)}


def load_from_hub(name: str, *, dev_seed: int = IMDB_DEV_SEED) -> Splits:
    """Download `glue/sst2` or `imdb` with `datasets` (online users only)."""
    import datasets

    if name not in HUB_NAMES:
        raise ValueError(f"no hub dataset for {name!r}; valid: {', '.join(HUB_NAMES)}")
    path, config = HUB_NAMES[name]
    loaded = datasets.load_dataset(path, config)
    column = "sentence" if name == "sst2" else "text"

    def convert(split: str) -> TextDataset:
        part = loaded[split]
        return TextDataset(tuple(part[column]), tuple(int(y) for y in part["label"]), f"{name}-{split}")

    if name == "sst2":
        return Splits(train=convert("train"), dev=convert("validation"), test=convert("validation"))
    dev, rest = stratified_split(convert("train"), IMDB_DEV_FRACTION, np.random.default_rng(dev_seed))
    return imdb_order(Splits(train=rest, dev=dev, test=convert("test")))


def load_from_disk(folder: str | Path) -> Splits:
    """A local Hugging Face `datasets` folder (save_to_disk) with train/validation-or-dev/test splits."""
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    names = set(loaded.keys())
    dev_name = next((s for s in ("dev", "validation") if s in names), None)
    if "train" not in names or dev_name is None:
        raise DataFileError(folder, f"needs a train and a dev/validation split; found {sorted(names)}")
    columns = set(loaded["train"].column_names)
    text = next((c for c in TEXT_COLUMNS if c in columns), None)
    if text is None or LABEL_COLUMN not in columns:
        raise DataFileError(folder, f"needs text and label columns; found {sorted(columns)}")

    def convert(split: str) -> TextDataset:
        part = loaded[split]
        return TextDataset(tuple(part[text]), tuple(int(y) for y in part[LABEL_COLUMN]), split)

    test = "test" if "test" in names else dev_name
    return Splits(train=convert("train"), dev=convert(dev_name), test=convert(test))


def load_splits(name: str, data_dir: str | Path | None = None) -> Splits:
    """A dataset by name: `sst2`, `sst2-glue`, `imdb`, or a folder of train/dev/test files."""
    builtin: dict[str, Callable[[], Splits]] = {
        "sst2": lambda: load_sst2(data_dir),
        "sst2-glue": lambda: load_sst2(data_dir, split="glue"),
        "imdb": lambda: load_imdb(data_dir),
    }
    if name in builtin:
        return builtin[name]()
    folder = Path(name)
    if folder.is_dir():
        if (folder / "dataset_dict.json").is_file():
            return load_from_disk(folder)
        return load_folder(folder)
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(builtin)}, or a folder of files")


def load_folder(folder: str | Path) -> Splits:
    """A folder with train and dev (and optionally test) files in CSV, TSV or JSONL."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for split in ("train", "dev", "test"):
        for suffix in (".csv", ".tsv", ".jsonl", ".csv.gz", ".tsv.gz", ".jsonl.gz"):
            if (folder / f"{split}{suffix}").is_file():
                found[split] = folder / f"{split}{suffix}"
                break
    if "train" not in found or "dev" not in found:
        raise DataFileError(folder, "needs train and dev files (train.csv/.tsv/.jsonl, dev.*, optional test.*)")
    sets = {s: read_labelled_file(p, name=f"{folder.name}-{s}") for s, p in found.items()}
    return Splits(train=sets["train"], dev=sets["dev"], test=sets.get("test", sets["dev"]))
