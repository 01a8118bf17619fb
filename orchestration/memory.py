"""A trial process's resident memory: its peak during a trial, and freed memory handed back after one.

A reused trial actor runs trial after trial in one process. When a trial ends no tensor of it is left alive,
but glibc's allocator keeps the pages it freed (mallopt(3): once a large block is freed, the mmap threshold
rises to its size and later blocks of up to 32 MB come from heaps that are only trimmed at their top), so the
actor's resident memory grew with each trial: MiniLM on IMDb reviews at 128 tokens, one reused Ray actor,
1,886 MB after the first trial and 7,100 MB after the eighth; with `release_memory` after each, 771 and 860 MB
(docs/results-schema.md's `peak_rss_mb` records each trial's peak). `release_memory` hands those pages back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import re
import resource
import sys
from collections.abc import Callable
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")  # "5" resets the peak (VmHWM) to the current resident size (Linux)


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (kB) in MB; None where there is no /proc."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return None if found is None else int(found.group(1)) / 1024


def resident_mb() -> float | None:
    """The process's resident memory now, in MB (None where the system does not say)."""
    return _status_mb("VmRSS")


def reset_peak() -> None:
    """Start a new peak: where the system cannot reset it, `peak_resident_mb` is the process's lifetime peak."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak_resident_mb() -> float:
    """The process's peak resident memory since `reset_peak`, in MB."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None under another C library."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Free what a finished trial left unreachable (reference cycles) and hand the allocator's free pages, in
    every arena, back to the system."""
    gc.collect()
    if (trim := _malloc_trim()) is not None:
        trim(0)
