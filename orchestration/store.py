"""Content-addressed artifact store: each artifact is built once, atomically, keyed by what determines it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from orchestration.code_version import running_code_version

MANIFEST = "artifact.json"  # written last inside each artifact folder: its presence means complete
# A settings field whose metadata sets this was added after results existed: it enters a key only when it
# differs from its default, so existing stores and finished trials keep their keys.
OMIT_DEFAULT = "omit_default_from_keys"
CODE = "code"  # the key entry holding orchestration.code_version's version of the code


def content_key(kind: str, fields: Mapping[str, Any], code: Mapping[str, str] | None = None) -> str:
    """A short stable hash of an artifact's kind, every field that determines it, and the code (default: this one's)."""
    keyed = {"kind": kind, **fields, CODE: dict(running_code_version() if code is None else code)}
    canonical = json.dumps(keyed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def manifest(kind: str, fields: Mapping[str, Any]) -> str:
    """An artifact's manifest: what it is, the fields of its key, and the code that built it."""
    return json.dumps(
        {"kind": kind, "fields": dict(fields), CODE: running_code_version()}, indent=2, sort_keys=True, default=str
    )


def key_fields(settings: Any) -> Any:
    """Settings (dataclasses, nested) as content_key's fields: as `asdict`, less OMIT_DEFAULT fields at default."""
    if is_dataclass(settings) and not isinstance(settings, type):
        return {
            f.name: key_fields(getattr(settings, f.name))
            for f in fields(settings)
            if not (f.metadata.get(OMIT_DEFAULT) and getattr(settings, f.name) == f.default)
        }
    if isinstance(settings, list | tuple):
        return [key_fields(item) for item in settings]
    if isinstance(settings, dict):
        return {key: key_fields(value) for key, value in settings.items()}
    return settings


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so readers see either the old content or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_folder(build: Callable[[Path], None], destination: Path) -> None:
    """Run `build` into a temporary sibling folder, then rename it into place (never half-written)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    try:
        build(staging)
        if destination.exists():
            shutil.rmtree(destination)
        os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@dataclass(frozen=True)
class ArtifactStore:
    """A folder of artifacts, shared by every trial (and every node, on a shared filesystem)."""

    root: Path

    def path(self, kind: str, fields: Mapping[str, Any]) -> Path:
        return self.root / kind / content_key(kind, fields)

    def has(self, kind: str, fields: Mapping[str, Any]) -> bool:
        """Whether a complete copy of the artifact is in the store."""
        return (self.path(kind, fields) / MANIFEST).is_file()

    def get_or_build(self, kind: str, fields: Mapping[str, Any], build: Callable[[Path], None]) -> Path:
        """The artifact's folder, building it first under an exclusive lock if no complete copy exists."""
        target = self.path(kind, fields)
        if (target / MANIFEST).is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not (target / MANIFEST).is_file():

                    def build_and_sign(folder: Path) -> None:
                        build(folder)
                        (folder / MANIFEST).write_text(manifest(kind, fields))

                    publish_folder(build_and_sign, target)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return target
