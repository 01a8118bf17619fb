"""The artifact store builds each artifact once, atomically, and keys on every field."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from core.defenses.mbtsad import MbtsadConfig
from orchestration.store import MANIFEST, ArtifactStore, content_key, key_fields, write_atomic


def _build_slowly(root: str, counter: str) -> None:
    def build(folder: Path) -> None:
        with open(counter, "a") as handle:
            handle.write("built\n")
        time.sleep(1.5)  # long enough that the other builders arrive while this one holds the lock
        (folder / "weights.txt").write_text("w")

    ArtifactStore(Path(root)).get_or_build("backdoored", {"attack": "badnets", "seed": 0}, build)


def test_key_depends_on_every_field() -> None:
    base = {"attack": "badnets", "seed": 0, "triggers": ["cf"]}
    assert content_key("m", base) == content_key("m", dict(reversed(list(base.items()))))
    assert content_key("m", base) != content_key("m", {**base, "seed": 1})
    assert content_key("m", base) != content_key("m", {**base, "triggers": ["mn"]})
    assert content_key("m", base) != content_key("d", base)


def test_a_setting_added_later_keys_only_when_changed() -> None:
    paper, rows = MbtsadConfig(), MbtsadConfig(attention_axis="row")
    assert "attention_axis" not in key_fields(paper) and key_fields(rows)["attention_axis"] == "row"
    assert key_fields(paper)["train"]["lr"] == paper.train.lr  # nested settings are all there
    assert content_key("trial", key_fields(paper)) != content_key("trial", key_fields(rows))
    assert content_key("trial", key_fields(MbtsadConfig(alpha=0.5))) != content_key("trial", key_fields(paper))


def test_concurrent_builders_build_once(tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_build_slowly, args=(str(tmp_path / "store"), str(counter))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert counter.read_text().count("built") == 1
    folder = ArtifactStore(tmp_path / "store").path("backdoored", {"attack": "badnets", "seed": 0})
    assert (folder / MANIFEST).is_file() and (folder / "weights.txt").read_text() == "w"


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)

    def broken(folder: Path) -> None:
        (folder / "half.bin").write_text("partial")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        store.get_or_build("teacher", {"seed": 1}, broken)
    kind_dir = tmp_path / "teacher"
    assert [p.name for p in kind_dir.iterdir() if not p.name.endswith(".lock")] == []
    assert store.get_or_build("teacher", {"seed": 1}, lambda f: (f / "ok").write_text("1")).is_dir()


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "result.json"
    write_atomic(target, b"{}")
    write_atomic(target, b'{"cacc": 90}')
    assert target.read_bytes() == b'{"cacc": 90}'
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
