"""The code a stored result came from: a digest of the source files that compute numbers, and the library versions.

Every content key of the artifact store holds it (`orchestration.store.content_key`), so a model or a
result computed by other code (an edited `core/`, a pulled version, another torch) is never reused: it
stays in the store under its old key and the new code builds its own.
"""

from __future__ import annotations

import functools
import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# What can change a stored number: every module of core/, and the shell modules that build artifacts and
# score trials. Presentation (CLI, progress, tables) and scheduling (Ray) are left out on purpose.
NUMERIC_SOURCES = ("core", "orchestration/artifacts.py", "orchestration/masked_lm.py", "orchestration/trial.py")
LIBRARIES = ("torch", "transformers")


def source_digest(root: Path, sources: tuple[str, ...] = NUMERIC_SOURCES) -> str:
    """sha256 over the relative path and bytes of each Python file under `sources` of the tree at `root`."""
    digest = hashlib.sha256()
    for source in sources:
        path = root / source
        if not path.exists():
            raise FileNotFoundError(f"code version: {path} does not exist (sources: {', '.join(sources)})")
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def library_version(name: str) -> str:
    """An installed distribution's version, without importing it."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def code_version(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The source digest of the tree at `root` and the installed torch and transformers versions."""
    return {"source": source_digest(root), **{name: library_version(name) for name in LIBRARIES}}


@functools.cache
def running_code_version() -> dict[str, str]:
    """`code_version` of the code this process runs (read once per process)."""
    return code_version()


def describe(code: dict[str, str]) -> str:
    """A code version in one line, as result rows record it: `source 1a2b...; torch 2.13.0; transformers 5.0`."""
    return "; ".join(f"{name} {value}" for name, value in code.items())
