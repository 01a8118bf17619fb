"""A rich progress bar fed by the training loop's callbacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from core.train import EpochRecord, StepReport

LOG_LINES = 4  # progress lines per training run where the output is not a terminal


@dataclass
class TrainingProgress:
    """Callbacks for `core.train.fit` that draw one bar per training run under a stage label; where the console
    is not a terminal (a log file, a pipe) they print a line at each quarter of a run instead."""

    progress: Progress
    stage: str = ""
    task: int | None = None

    def start(self, stage: str) -> None:
        self.stage, self.task = stage, None

    def on_step(self, report: StepReport) -> None:
        if self.task is None or report.step == 1:
            self.task = self.progress.add_task(self.stage, total=report.total_steps)
        loss = report.values.get("loss", float("nan"))
        self.progress.update(
            self.task, completed=report.step, description=f"{self.stage} e{report.epoch} loss {loss:.3f}"
        )
        quarter = report.step * LOG_LINES // report.total_steps
        if not self.progress.console.is_terminal and quarter > (report.step - 1) * LOG_LINES // report.total_steps:
            elapsed = self.progress.tasks[self.task].elapsed or 0.0
            self.progress.console.print(
                f"{self.stage}: step {report.step}/{report.total_steps} (epoch {report.epoch}), loss {loss:.3f}, "
                f"{elapsed:.0f} s",
                highlight=False,
                soft_wrap=True,
            )

    def on_epoch(self, record: EpochRecord) -> None:
        if record.dev is not None:
            self.progress.console.log(f"{self.stage}: epoch {record.epoch} clean dev {record.dev.percent:.2f}%")


@contextmanager
def training_progress(console: Console | None = None) -> Iterator[TrainingProgress]:
    """A live progress display for the duration of the block."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as progress:
        yield TrainingProgress(progress=progress)
