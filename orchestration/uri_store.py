"""The artifact store on a storage URI (s3://, gs://, file://, whatever pyarrow.fs reads, as Ray Tune does).

Each node keeps a local copy of what it uses under a cache folder (an `ArtifactStore`, so processes on
one node share it under a file lock). The URI holds the shared copy: an artifact's files are uploaded
first and its manifest last, so a folder without a manifest is never read. Object stores cannot lock,
so a cluster-wide lock is passed in (`orchestration.sweep.cluster_lock` leases it from a Ray actor);
under it one node builds and the others wait, then download.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from orchestration.store import MANIFEST, ArtifactStore, content_key, manifest

Lock = Callable[[str], AbstractContextManager[object]]  # key -> a context holding the cluster-wide lock on it


def no_lock(key: str) -> AbstractContextManager[object]:
    """A lock for one process (tests, a single machine): the local file lock already serialises builds."""
    return nullcontext()


def default_cache(uri: str) -> Path:
    """Where a node keeps its copies of a URI store's artifacts: one folder per URI under the temp dir."""
    return Path(tempfile.gettempdir()) / "mbtsad-store" / hashlib.sha256(uri.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UriArtifactStore:
    """`ArtifactStore.get_or_build` over a storage URI, with a local cache per node."""

    uri: str
    cache: ArtifactStore
    lock: Lock = no_lock
    filesystem: pafs.FileSystem = field(init=False, repr=False)
    base: str = field(init=False)

    def __post_init__(self) -> None:
        try:
            filesystem, base = pafs.FileSystem.from_uri(self.uri)
        except (pafs.ArrowInvalid, OSError) as err:  # an unknown scheme, or a bucket that is not reachable
            raise ValueError(f"store {self.uri!r}: not a storage location pyarrow can open ({err})") from None
        object.__setattr__(self, "filesystem", filesystem)
        object.__setattr__(self, "base", base.rstrip("/"))

    def remote(self, kind: str, fields: Mapping[str, Any]) -> str:
        """The artifact's folder on the storage filesystem."""
        return f"{self.base}/{kind}/{content_key(kind, fields)}"

    def _complete(self, remote: str) -> bool:
        return self.filesystem.get_file_info(f"{remote}/{MANIFEST}").type == pafs.FileType.File

    def has(self, kind: str, fields: Mapping[str, Any]) -> bool:
        """Whether a complete copy of the artifact is in this node's cache or at the URI."""
        return self.cache.has(kind, fields) or self._complete(self.remote(kind, fields))

    def get_or_build(self, kind: str, fields: Mapping[str, Any], build: Callable[[Path], None]) -> Path:
        """A local folder holding the artifact: the cached copy, else downloaded, else built and uploaded."""
        remote = self.remote(kind, fields)

        def fetch(folder: Path) -> None:
            if not self._complete(remote):
                with self.lock(remote):
                    if not self._complete(remote):
                        build(folder)
                        self._upload(folder, remote, kind, fields)
                        return
            pafs.copy_files(remote, str(folder), source_filesystem=self.filesystem)

        return self.cache.get_or_build(kind, fields, fetch)

    def _upload(self, folder: Path, remote: str, kind: str, fields: Mapping[str, Any]) -> None:
        """Every file, then the manifest: readers trust only folders whose manifest exists."""
        self.filesystem.create_dir(remote, recursive=True)
        pafs.copy_files(str(folder), remote, destination_filesystem=self.filesystem)
        with self.filesystem.open_output_stream(f"{remote}/{MANIFEST}") as out:
            out.write(manifest(kind, fields).encode())


Store = ArtifactStore | UriArtifactStore


def open_store(location: str, *, lock: Lock = no_lock) -> Store:
    """A local folder, or a storage URI (anything with `://`) cached per node under the temp dir."""
    if "://" not in location:
        return ArtifactStore(Path(location))
    return UriArtifactStore(location, ArtifactStore(default_cache(location)), lock)
