"""`tables` command: a run folder's results as the paper's tables, printed and written to a folder."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

SHOWN_PROBLEMS = 20  # the rest are in problems.txt


@click.command(
    help="Write Tables I-IV and the eq. 9 table (LaTeX, Markdown) and bar charts from a run's results.",
    short_help="Tables I-IV and the eq. 9 table (LaTeX, Markdown) and bar charts of a run.",
)
@click.option(
    "--results",
    "results_dirs",
    required=True,
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run folder holding trials/ and select_aug/ (docs/results-schema.md); repeat it to read several "
    "folders as one run (the same trial in two folders counts once).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for table*.tex, tables.tex, tables.md, figures/ and problems.txt; created if missing.",
)
def tables_command(results_dirs: tuple[Path, ...], out_dir: Path) -> None:
    """Print the tables as Markdown, then the problems found in the results."""
    from tables.build import write_tables  # polars and matplotlib load only when tables are made
    from tables.load import ResultsError

    try:
        report = write_tables(results_dirs, out_dir)
    except ResultsError as error:
        raise click.BadParameter(str(error), param_hint="--results") from None
    console = Console()
    console.print(Markdown(report.markdown))
    if report.problems:
        console.print(
            Text(f"{len(report.problems)} problem(s) found, also listed in {out_dir / 'problems.txt'}:", "yellow")
        )
        for problem in report.problems[:SHOWN_PROBLEMS]:
            console.print(Text(f"  - {problem.message}"))
        if len(report.problems) > SHOWN_PROBLEMS:
            console.print(Text(f"  ... and {len(report.problems) - SHOWN_PROBLEMS} more"))
    console.print(Text(f"Wrote {len(report.files)} files to {out_dir}", "green"))
