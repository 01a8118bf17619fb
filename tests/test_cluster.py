"""cluster.yaml against Ray's own schema, clear errors for bad cluster files, and the commands a sweep runs."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from cli import cli
from orchestration.cluster import (
    ClusterConfigError,
    cluster_commands,
    has_gpu_workers,
    load_cluster_config,
    ray_schema,
)

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"


def test_cluster_yaml_matches_rays_schema_and_rules() -> None:
    raw = yaml.safe_load(CLUSTER.read_text())
    jsonschema.validate(raw, ray_schema())  # the schema `ray up` checks, shipped in the ray package
    config = load_cluster_config(CLUSTER)  # and Ray's own checks after filling in the provider's defaults
    assert config["head_node_type"] in config["available_node_types"]
    assert has_gpu_workers(config)
    assert "~/mbtsad" in config["file_mounts"]


def write(tmp_path: Path, change: dict | None = None, drop: str | None = None, text: str | None = None) -> Path:
    config = yaml.safe_load(CLUSTER.read_text())
    config.update(change or {})
    config.pop(drop or "", None)
    path = tmp_path / "bad.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "cluster_name: x\nprovider: [unclosed"}, "not valid YAML"),
        ({"text": "- just\n- a list\n"}, "expected a mapping"),
        ({"drop": "provider"}, "top level: 'provider' is a required property"),
        ({"change": {"max_wokers": 2}}, "Additional properties are not allowed \\('max_wokers' was unexpected\\)"),
        (
            {"change": {"available_node_types": {"head": {"resources": {"GPU": 0.5}, "node_config": {}}}}},
            "available_node_types.head.resources.GPU: 0.5 is not of type 'integer'",
        ),
        ({"drop": "head_node_type"}, "needs `head_node_type`"),
        ({"change": {"head_node_type": "boss"}}, "`head_node_type` must be one of `available_node_types`"),
        ({"change": {"file_mounts": {"~/data": "../shared/data"}}}, "file_mounts must ship the project"),
    ],
)
def test_bad_cluster_files_fail_with_the_file_and_the_problem(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = write(tmp_path, **kwargs)
    with pytest.raises(ClusterConfigError, match=message) as error:
        load_cluster_config(path)
    assert str(error.value).startswith(str(path))


def test_sweep_commands_bring_up_run_on_the_head_and_fetch_results() -> None:
    config = load_cluster_config(CLUSTER)
    up, run, fetch = cluster_commands(CLUSTER, config, ["--preset", "paper", "--set", "seeds=[0, 1]"], "runs/paper")
    assert up == ["ray", "up", "-y", "--no-restart", str(CLUSTER)]
    assert run[:3] == ["ray", "exec", str(CLUSTER)]
    assert run[3] == "cd ~/mbtsad && python cli.py sweep --address auto --preset paper --set 'seeds=[0, 1]'"
    assert fetch == ["ray", "rsync-down", str(CLUSTER), "~/mbtsad/runs/paper/", "runs/paper/"]


def test_sweep_with_a_bad_cluster_file_exits_with_one_clear_line(tmp_path: Path) -> None:
    path = write(tmp_path, drop="head_node_type")
    result = CliRunner().invoke(cli, ["sweep", "--cluster", str(path)])
    assert result.exit_code == 2
    assert "needs `head_node_type`" in result.output and "Traceback" not in result.output
