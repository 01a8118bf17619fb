"""The artifact store builds each artifact once, atomically, and keys on every field."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from pathlib import Path

import pytest

from core.defenses.mbtsad import MbtsadConfig
from orchestration.code_version import NUMERIC_SOURCES, PROJECT_ROOT, code_version, running_code_version
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


def _copy_tree(root: Path, into: Path) -> Path:
    """The sources that key results, copied as they are into a fresh folder."""
    for source in NUMERIC_SOURCES:
        path = PROJECT_ROOT / source
        if path.is_dir():
            shutil.copytree(path, into / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (into / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, into / source)
    return into


def test_keys_follow_the_code(tmp_path: Path) -> None:
    copy = _copy_tree(PROJECT_ROOT, tmp_path / "copy")
    fields = {"attack": "badnets", "seed": 0}
    same = code_version(copy)
    assert same == code_version(PROJECT_ROOT) == running_code_version()  # where the tree lies does not matter
    assert content_key("trial", fields, same) == content_key("trial", fields)
    with (copy / "core" / "losses.py").open("a") as out:
        out.write("\n# a changed line\n")
    changed = code_version(copy)
    assert changed["source"] != same["source"] and changed["torch"] == same["torch"]
    assert content_key("trial", fields, changed) != content_key("trial", fields, same)
    assert content_key("trial", fields, {**same, "torch": "0.0.1"}) != content_key("trial", fields, same)


def test_an_artifact_of_other_code_is_not_reused(tmp_path: Path) -> None:
    fields = {"seed": 3}
    other_code = {**running_code_version(), "source": "0" * 16}
    old = tmp_path / "teacher" / content_key("teacher", fields, other_code)  # complete, built by other code
    old.mkdir(parents=True)
    (old / "w").write_text("old")
    (old / MANIFEST).write_text(json.dumps({"kind": "teacher", "fields": fields, "code": other_code}))
    store = ArtifactStore(tmp_path)
    assert not store.has("teacher", fields)
    new = store.get_or_build("teacher", fields, lambda f: (f / "w").write_text("new"))
    assert (new / "w").read_text() == "new" and (old / "w").read_text() == "old"  # rebuilt; the old one stays
    assert store.has("teacher", fields) and json.loads((new / MANIFEST).read_text())["code"] == running_code_version()
