"""The CLI as a new user first meets it: --help and usage errors without the heavy imports, whole summaries,
and one style and exit code for bad input, printed unwrapped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli import cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "ray", "polars", "matplotlib", "numpy")


def loaded_after(*args: str) -> tuple[list[str], int]:
    """The heavy modules a fresh interpreter holds after `cli.py ARGS`, and the command's exit code."""
    probe = (
        "import json, sys\n"
        "from cli import cli\n"
        "try:\n"
        f"    cli({list(args)!r})\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        f"print(json.dumps([sorted(m for m in {HEAVY!r} if m in sys.modules), code]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    modules, code = json.loads(result.stdout.splitlines()[-1])
    return modules, code


def test_help_and_usage_errors_import_no_torch_transformers_or_ray() -> None:
    assert loaded_after("--help") == ([], 0)
    assert loaded_after("sweep", "--help") == ([], 0)
    assert loaded_after("sweep", "--no-such-option") == ([], 2)
    assert loaded_after("defend", "--method", "cft") == ([], 2)  # MODEL_DIR missing


def test_help_shows_every_summary_whole() -> None:
    output = CliRunner().invoke(cli, ["--help"]).output
    commands = " ".join(output[output.index("Commands:") :].split())  # the summaries with click's wrapping undone
    assert "select-aug Eq. 9: score each augmentation by M_b's cross-entropy; t-SNE pictures. " in commands
    assert "tables Tables I-IV and the eq. 9 table (LaTeX, Markdown) and bar charts of a run. " in commands


def test_bad_input_says_error_and_exits_2_in_every_command(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    outcomes = {
        "sweep": runner.invoke(cli, ["sweep", "--set", "training.max_lenght=64"]),
        "evaluate": runner.invoke(cli, ["evaluate", str(tmp_path / "empty")]),
        "tables": runner.invoke(cli, ["tables", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]),
        "usage": runner.invoke(cli, ["tables", "--results", str(tmp_path / "empty")]),
    }
    for name, result in outcomes.items():
        assert result.exit_code == 2, (name, result.output)
        assert "\nError: " in "\n" + result.output and "error:" not in result.output, (name, result.output)
        assert "Traceback" not in result.output, name
    assert "unknown setting 'training.max_lenght'" in outcomes["sweep"].output
    assert "no result files" in outcomes["tables"].output


def test_errors_are_printed_unwrapped(tmp_path: Path) -> None:
    folder = tmp_path.joinpath(*(f"a-rather-long-folder-name-{i}" for i in range(6)))  # far wider than 80 columns
    folder.mkdir(parents=True)
    result = CliRunner(env={"COLUMNS": "60"}).invoke(cli, ["evaluate", str(folder)])
    assert result.exit_code == 2, result.output
    assert any(str(folder) in line for line in result.output.splitlines()), result.output
