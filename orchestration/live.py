"""The sweep's live progress line: trials done, running, failed and pending, and the estimated time left."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


def clock(seconds: float) -> str:
    """h:mm:ss."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class SweepProgress:
    """Counts of the sweep's trials and this session's pace, from which the time left is estimated."""

    total: int
    done: int = 0  # finished with a result (this session or before a resume)
    running: int = 0
    failed: int = 0  # out of retries
    retries: int = 0  # failures that were retried
    finished_here: int = 0  # trials finished since this driver started: the pace
    started: float = field(default_factory=time.monotonic)
    last: str = ""  # the latest finished trial, in words

    @property
    def pending(self) -> int:
        """Trials not started yet (or waiting for a retry)."""
        return max(0, self.total - self.done - self.running - self.failed)

    def eta(self) -> float | None:
        """Seconds left at this session's pace (trials finished per second, concurrency included)."""
        if self.finished_here == 0:
            return None
        left = self.total - self.done - self.failed
        return left * (time.monotonic() - self.started) / self.finished_here

    def summary(self) -> str:
        """The counts, elapsed time and ETA in one line."""
        eta = self.eta()
        return (
            f"{self.done}/{self.total} done, {self.running} running, {self.failed} failed, {self.pending} pending"
            + (f", {self.retries} retried" if self.retries else "")
            + f"; elapsed {clock(time.monotonic() - self.started)}, "
            + ("ETA estimating" if eta is None else f"ETA {clock(eta)}")
        )

    def render(self, title: str) -> Group:
        """A bar and the summary line, for a rich Live display."""
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            Text(title, style="bold"), ProgressBar(total=max(1, self.total), completed=self.done + self.failed)
        )
        return Group(grid, Text(self.summary()), Text(self.last, style="dim"))
