"""Ray cluster-launcher files: checked against Ray's own schema, then used to run a sweep on the cluster.

`sweep --cluster cluster.yaml` runs three `ray` CLI commands from the project root:
`ray up -y --no-restart FILE` (launches the cluster, or updates a running head's file mounts, which
ship the project), `ray exec FILE "cd REMOTE && python cli.py sweep --address auto ..."` (the sweep's
driver runs on the head; Ray ships the project to the workers as the job's working directory), and
`ray rsync-down FILE REMOTE/RUN_DIR/ RUN_DIR/` (the results come home).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ClusterConfigError(ValueError):
    """A cluster file that Ray would refuse or that cannot run a sweep; the message names file, key and problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


def ray_schema() -> dict[str, Any]:
    """The JSON schema `ray up` validates cluster files with (shipped inside the ray package)."""
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "top level"


def load_cluster_config(path: Path) -> dict[str, Any]:
    """Read a cluster file and check it as `ray up` would (schema, then Ray's own rules), plus what a sweep needs."""
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ClusterConfigError(path, f"cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ClusterConfigError(path, f"not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(path, "expected a mapping (cluster_name, provider, available_node_types, ...)")
    errors = sorted(jsonschema.Draft7Validator(ray_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(f"{_where(e)}: {e.message}" for e in errors[:5])
        raise ClusterConfigError(path, f"does not match Ray's cluster schema: {shown}")
    for key in ("head_node_type", "available_node_types"):
        if key not in config:
            raise ClusterConfigError(path, f"needs `{key}` (a head node type and worker node types)")
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)
    try:
        validate_config(prepare_config(config))
    except (ValueError, NotImplementedError, jsonschema.ValidationError) as err:
        raise ClusterConfigError(path, str(err).splitlines()[0]) from None
    remote_project(path, config)  # a sweep needs the project mounted on the head
    return config


def remote_project(path: Path, config: dict[str, Any]) -> str:
    """Where `file_mounts` puts the project on the cluster (the mount whose source is the project root)."""
    for remote, local in (config.get("file_mounts") or {}).items():
        if (PROJECT_ROOT / str(local)).resolve() == PROJECT_ROOT:
            return str(remote).rstrip("/")
    raise ClusterConfigError(path, 'file_mounts must ship the project: add `"~/mbtsad": "."` (paths relative to it)')


def has_gpu_workers(config: dict[str, Any]) -> bool:
    """Whether any node type offers GPUs (then trials ask for one, before the autoscaler has started any)."""
    return any(node.get("resources", {}).get("GPU", 0) > 0 for node in config["available_node_types"].values())


def cluster_commands(path: Path, config: dict[str, Any], sweep_args: list[str], run_dir: str) -> list[list[str]]:
    """The `ray` commands that bring the cluster up (or update it), run the sweep on its head, and fetch the results."""
    remote = remote_project(path, config)
    driver = f"cd {remote} && python cli.py sweep --address auto {shlex.join(sweep_args)}"
    return [
        ["ray", "up", "-y", "--no-restart", str(path)],
        ["ray", "exec", str(path), driver],
        ["ray", "rsync-down", str(path), f"{remote}/{run_dir.rstrip('/')}/", f"{run_dir.rstrip('/')}/"],
    ]


def run_on_cluster(path: Path, sweep_args: list[str], run_dir: str) -> None:
    """Validate the file, then run `cluster_commands` one after another from the project root."""
    config = load_cluster_config(path)
    resuming = "--resume" in sweep_args  # a resumed sweep keeps the resources it started with
    if has_gpu_workers(config) and not resuming and not any("gpus_per_trial" in arg for arg in sweep_args):
        sweep_args = [*sweep_args, "--set", "resources.gpus_per_trial=1"]
    if shutil.which("ray") is None:
        raise FileNotFoundError(
            "the `ray` command is not on PATH (pip install 'ray[default]' brings the cluster launcher)"
        )
    for command in cluster_commands(path.resolve(), config, sweep_args, run_dir):
        if subprocess.run(command, cwd=PROJECT_ROOT, check=False).returncode != 0:
            hint = f"; continue it with `sweep --cluster {path} --resume {run_dir}`" if command[1] == "exec" else ""
            raise RuntimeError(f"`{shlex.join(command)}` failed (its output is above){hint}")


def sweep_on_cluster(
    path: Path,
    *,
    preset: str,
    settings: dict[str, Any],
    run_dir: Path | None,
    resume_dir: Path | None,
    tracking: list[str],
) -> str:
    """`cli.py sweep --cluster`: the same sweep forwarded to the cluster's head (`--resume`, or the preset, the run
    folder and every setting as `--set`), run there, its results fetched; returns the run folder."""
    from orchestration.presets import preset as preset_spec

    target = str(resume_dir or run_dir or Path("runs") / settings.get("name", preset_spec(preset).name))
    forwarded = ["--resume", target] if resume_dir else ["--preset", preset, "--run-dir", target]
    for key, value in settings.items():
        forwarded += ["--set", f"{key}={json.dumps(value)}"]
    run_on_cluster(path, [*forwarded, *tracking], target)
    return target
