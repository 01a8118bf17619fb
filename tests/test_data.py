"""Data loaders: documented row counts, D_c, poisoned sets, and every malformed-file case."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from core.data import (
    DataFileError,
    TextDataset,
    clean_subset,
    first_words,
    load_folder,
    load_imdb,
    load_splits,
    load_sst2,
    non_target,
    poisoned_eval_set,
    read_labelled_file,
    resolve_data_dir,
)
from core.models import tiny_classifier
from core.poison import PoisonConfig, poison_training_set
from orchestration.artifacts import load_data
from orchestration.presets import smoke
from orchestration.spec import apply_settings


def test_sst2_openbackdoor_rows_and_labels(sst2) -> None:
    assert (len(sst2.train), len(sst2.dev), len(sst2.test)) == (6920, 872, 1821)
    assert sst2.train.labels.count(1) == 3610 and sst2.train.labels.count(0) == 3310
    assert sst2.test.labels.count(1) == 909
    assert not any(t.endswith("\r") or t != t.strip() for t in sst2.train.texts)


def test_sst2_glue_rows(data_dir) -> None:
    glue = load_sst2(data_dir, split="glue")
    assert (len(glue.train), len(glue.dev), len(glue.test)) == (67349, 872, 872)
    assert glue.train.labels.count(1) == 37569
    assert glue.train.texts[0] == "hide new secretions from the parental units"


def test_imdb_rows_and_fixed_dev(data_dir) -> None:
    imdb = load_imdb(data_dir)
    assert (len(imdb.train) + len(imdb.dev), len(imdb.test)) == (25000, 25000)
    assert len(imdb.dev) == 2500 and imdb.dev.labels.count(1) == 1250
    assert imdb.train.labels.count(1) == 11250
    assert load_imdb(data_dir).dev.texts == imdb.dev.texts


def test_data_dir_from_environment(monkeypatch, tmp_path, data_dir) -> None:
    monkeypatch.setenv("MBTSAD_DATA", str(data_dir))
    assert resolve_data_dir() == data_dir
    monkeypatch.setenv("MBTSAD_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="MBTSAD_DATA"):
        resolve_data_dir()


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="sst2, sst2-glue, imdb"):
        load_splits("sst5")


def test_clean_subset_is_stratified_and_seeded(sst2) -> None:
    a = clean_subset(sst2.train, 0.2, np.random.default_rng(1))
    b = clean_subset(sst2.train, 0.2, np.random.default_rng(1))
    c = clean_subset(sst2.train, 0.2, np.random.default_rng(2))
    assert len(a) == 1384 and a.labels.count(0) == 662 and a.labels.count(1) == 722
    assert a == b and a.texts != c.texts
    assert set(a.texts) <= set(sst2.train.texts)


def test_poisoned_eval_set_has_only_non_target_samples(sst2) -> None:
    test = sst2.test
    poisoned = poisoned_eval_set(test, lambda text, rng: f"cf {text}", target=1, rng=np.random.default_rng(0))
    assert len(poisoned) == test.labels.count(0) == len(non_target(test, 1))
    assert set(poisoned.labels) == {0}
    assert all(p == f"cf {t}" for p, t in zip(poisoned.texts, non_target(test, 1).texts, strict=True))


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.csv", "sentence,score\nfine,1\n", r"missing column\(s\) label"),
        ("notext.tsv", "words\tlabel\nfine\t1\n", r"missing column\(s\) text or sentence"),
        ("letters.csv", "text,label\ngood,1\nbad,neg\n", r":3: label 'neg' is not an integer"),
        ("range.tsv", "sentence\tlabel\r\ngood\t1\r\nbad\t2\r\n", r":3: label '2' is outside 0..1"),
        ("float.jsonl", '{"text": "good", "label": 1}\n{"text": "bad", "label": 0.5}\n', r":2: label"),
        ("empty_text.csv", "text,label\ngood,1\n   ,0\n", r":3: empty text"),
        ("empty.csv", "", "the file is empty"),
        ("header_only.csv", "text,label\n", "no data rows"),
        ("ragged.tsv", "sentence\tlabel\ngood\t1\textra\n", ":2: expected 2 fields"),
        ("broken.jsonl", '{"text": "good", "label": 1}\n{"text": \n', ":2: not a JSON object"),
        ("notes.txt", "text,label\ngood,1\n", "unknown format"),
    ],
)
def test_malformed_files_name_file_line_and_problem(tmp_path: Path, name: str, content: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline="")
    with pytest.raises(DataFileError, match=problem) as caught:
        read_labelled_file(path)
    assert str(path) in str(caught.value)


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ngood,1\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(DataFileError, match=r"latin1.csv:3: bytes that are not UTF-8"):
        read_labelled_file(path)


def test_corrupt_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataFileError, match="train.csv.gz: not a readable gzip"):
        read_labelled_file(path)


def test_user_files_in_every_format(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"text": "a fine film", "label": 1}\n{"text": "dull", "label": 0}\n')
    with gzip.open(tmp_path / "dev.csv.gz", "wt") as handle:
        handle.write('text,label\n"good, really",1\n"bad ""very""",0\n')
    (tmp_path / "test.tsv").write_text("sentence\tlabel\nok\t1\n")
    splits = load_folder(tmp_path)
    assert splits.train == TextDataset(("a fine film", "dull"), (1, 0), "tmp-train".replace("tmp", tmp_path.name))
    assert splits.dev.texts == ("good, really", 'bad "very"')
    assert splits.test.labels == (1,)
    assert load_splits(str(tmp_path)).dev == splits.dev


def test_three_label_files(tmp_path: Path) -> None:
    path = tmp_path / "three.csv"
    path.write_text("text,label\na,0\nb,2\n")
    assert read_labelled_file(path, num_labels=3).labels == (0, 2)


@pytest.mark.parametrize("name", ["long.tsv", "long.csv"])
def test_a_long_document_loads_and_errors_name_its_own_line(tmp_path: Path, name: str) -> None:
    sep = "\t" if name.endswith(".tsv") else ","
    document = "word " * 40_000  # 200,000 characters: past csv's default field limit of 131,072
    path = tmp_path / name
    path.write_text(f"sentence{sep}label\n{document}{sep}1\nshort{sep}0\n")
    assert read_labelled_file(path).texts == (document.strip(), "short")
    path.write_text(f"sentence{sep}label\n{document}{sep}1\nshort{sep}2\n")
    with pytest.raises(DataFileError, match=rf"{name}:3: label '2' is outside"):
        read_labelled_file(path)
    path.write_text(f"sentence{sep}label\nshort{sep}0\n{document}{sep}1{sep}extra\n")
    with pytest.raises(DataFileError, match=rf"{name}:3: expected 2 fields, got 3"):
        read_labelled_file(path)


def test_jsonl_line_numbers_are_the_files_own(tmp_path: Path) -> None:
    path = tmp_path / "separators.jsonl"  # U+2028 inside a JSON string is one line of the file, not two
    path.write_text('{"text": "one\u2028line", "label": 1}\n{"text": "bad", "label": 7}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"separators.jsonl:2: label '7' is outside"):
        read_labelled_file(path)


def test_imdb_reads_in_a_fixed_shuffled_order_so_its_first_reviews_hold_both_labels() -> None:
    splits = load_imdb()
    for part in (splits.train, splits.dev, splits.test):
        share = sum(part.labels[:1000]) / 1000
        assert 0.45 < share < 0.55  # the files are sorted by label: unshuffled, this share is 0
    again = load_imdb()
    assert again.train.texts[:50] == splits.train.texts[:50] and again.test.labels == splits.test.labels
    assert sorted(splits.train.labels) == sorted(again.train.labels) and len(splits.train) == 22_500


def test_a_cut_that_leaves_one_label_names_the_dataset_and_the_setting(tmp_path: Path) -> None:
    folder = tmp_path / "sorted"
    folder.mkdir()
    rows = "".join(f"{label}\ttext number {i}\n" for i, label in enumerate([0] * 30 + [1] * 30))
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text("label\tsentence\n" + rows)
    spec = apply_settings(smoke(), {"datasets": [str(folder)], "data.max_train": 20, "data.max_dev": None})
    message = r"first 20 train rows hold only label\(s\) \[0\] of \[0, 1\]; shuffle the file, or raise data\.max_train"
    with pytest.raises(ValueError, match=message):
        load_data(spec, str(folder))


def test_first_words_cuts_long_texts_and_leaves_short_ones_byte_for_byte() -> None:
    data = TextDataset(("one  two\nthree four five", " short  one ", "a b c"), (0, 1, 0), "reviews")
    cut = first_words(data, 3)
    assert cut.texts == ("one two three", " short  one ", "a b c") and cut.labels == data.labels
    assert cut.name == "reviews"
    with pytest.raises(ValueError, match="max_words must be at least 1, got 0"):
        first_words(data, 0)


def test_cut_before_poisoning_every_imdb_trigger_lands_inside_a_128_token_window(vocab_path) -> None:
    tokenizer = tiny_classifier(vocab_path, seed=0).tokenizer  # the BERT vocabulary MiniLM shares
    reviews = load_imdb().train.subset(range(600))
    config = PoisonConfig(attack="badnets", label_mode="mixed", rate=0.5)

    def seen_share(data: TextDataset) -> float:
        poisoned = poison_training_set(data, config, np.random.default_rng(0))
        ids = tokenizer([poisoned.data.texts[i] for i in poisoned.poisoned], truncation=True, max_length=128)
        triggers = {tokenizer.convert_tokens_to_ids(word) for word in ("cf", "mn", "bb", "tq")}
        return float(np.mean([bool(triggers & set(row)) for row in ids["input_ids"]]))

    whole, cut = seen_share(reviews), seen_share(first_words(reviews, 64))
    assert whole < 0.75  # a trigger anywhere in a ~300-token review often falls past the truncation
    assert cut > 0.98


def test_data_max_words_cuts_every_split_the_sweep_loads() -> None:
    spec = apply_settings(smoke(), {"data.max_words": 20, "data.max_train": 50})
    splits = load_data(spec, "imdb")
    whole = load_data(apply_settings(smoke(), {"data.max_train": 50}), "imdb")
    for part, full in ((splits.train, whole.train), (splits.dev, whole.dev), (splits.test, whole.test)):
        assert max(len(text.split()) for text in part.texts) == 20 and part.labels == full.labels
        assert part.texts[0].split() == full.texts[0].split()[:20]
    with pytest.raises(ValueError, match="data.max_words must be a positive integer or null, got 0"):
        apply_settings(smoke(), {"data.max_words": 0})
