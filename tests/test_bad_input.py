"""Bad input never reaches a trial: every setting is converted to its field's type and checked when the spec is
built, a failed trial's row is written whatever its settings, and a clean file too small to split says so."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import cli
from core.defenses import get_defense
from core.models import tiny_classifier
from orchestration.model_files import save_classifier
from orchestration.overrides import apply_overrides
from orchestration.presets import smoke
from orchestration.results import read_rows, write_row
from orchestration.spec import (
    Cell,
    apply_settings,
    cells,
    dataset_spec,
    defense_setup,
    flatten,
    load_settings_file,
    parse_value,
    read_best_params,
    spec_from_dict,
    spec_to_dict,
)
from orchestration.sweep import failed_row, trial_inputs
from orchestration.trial import trial_id
from orchestration.tune_trials import TRIALS_FILE, read_tune_trials, write_tune_trials

# ------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"training.distil.lr": "abc"}, r"^training\.distil\.lr: expected a float or null, got 'abc'$"),
        ({"training.max_length": "long"}, r"^training\.max_length: expected an integer, got 'long'$"),
        ({"training.bf16": "maybe"}, r"^training\.bf16: expected a boolean \(true or false\) or null, got 'maybe'$"),
        ({"seeds": [0, "x"]}, r"^seeds: expected a list of integers, got \[0, 'x'\]$"),
        ({"resources.max_concurrent": 1.5}, r"^resources\.max_concurrent: expected an integer or null, got 1\.5$"),
        ({"training.distil": {"lr": "abc"}}, r"^training\.distil\.lr: expected a float or null, got 'abc'$"),
        # Values only a lazily built cell config rejects: the spec builds every cell's config once.
        ({"training.distil.lr": -1}, r"^training\.distil\.lr=-1: defense mbtsad: need lr > 0"),
        ({"training.retrain.epochs": 0}, r"^training\.retrain\.epochs=0: defense ts-ft: need .*epochs >= 1"),
        ({"training.attack.lr": 0}, r"^training\.attack\.lr=0: attack badnets: need lr > 0"),
        (
            {"defense_settings.fine-mixing.rho": "abc"},
            r"^defense fine-mixing: rho: expected a float or null, got 'abc'",
        ),
        ({"defense_settings.mbtsad.attention_axis": "diag"}, r"^defense mbtsad: .*attention_axis must be one of"),
        ({"attack_settings.badnets.poison.rate": "x"}, r"^attack badnets: poison\.rate: expected a float, got 'x'$"),
        ({"defense_settings.cft.train.lr": "fast"}, r"^defense cft: train\.lr: expected a float, got 'fast'$"),
    ],
)
def test_a_bad_setting_fails_when_the_spec_is_built(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_settings(smoke(), {key: parse_value(v) if isinstance(v, str) else v for key, v in settings.items()})


def test_a_defence_outside_the_grid_is_checked_too() -> None:
    spec = apply_settings(smoke(), {"defenses": ["none", "cft"]})
    with pytest.raises(ValueError, match=r"^defense fine-pruning: cft.train.epochs: expected an integer, got .many.$"):
        apply_settings(spec, {"defense_settings.fine-pruning.cft.train.epochs": "many"})


def test_settings_are_converted_to_their_types(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("training:\n  distil:\n    lr: 1e-4\n  bf16: 'false'\ndatasets: imdb\nname: 2024\n")
    spec = apply_settings(smoke(), flatten(load_settings_file(path)))  # YAML reads 1e-4 as a string
    assert spec.training.distil.lr == 1e-4 and isinstance(spec.training.distil.lr, float)
    assert spec.training.bf16 is False and spec.datasets == ("imdb",) and spec.name == "2024"
    assert apply_settings(smoke(), {"training.max_length": parse_value("64")}).training.max_length == 64
    assert apply_settings(smoke(), {"data.max_train": "null"}).data.max_train is None
    path.write_text("training:\n  distil:\n    lr: abc\n")
    with pytest.raises(ValueError, match=r"training\.distil\.lr: expected a float or null, got 'abc'"):
        apply_settings(smoke(), flatten(load_settings_file(path)))


def test_defend_overrides_are_converted_and_checked() -> None:
    config = get_defense("mbtsad").default_config()
    changed = apply_overrides(config, {"alpha": "0.5", "train.epochs": "3", "terms": "ce"})
    assert (changed.alpha, changed.train.epochs, changed.terms) == (0.5, 3, ("ce",))
    with pytest.raises(ValueError, match=r"^train\.lr: expected a float, got 'abc'$"):
        apply_overrides(config, {"train.lr": "abc"})
    with pytest.raises(ValueError, match=r"^train\.lr=-0\.1: need lr > 0"):
        apply_overrides(config, {"train.lr": "-0.1"})
    with pytest.raises(ValueError, match=r"^terms=\['ce', 'ce'\]: terms must be distinct"):
        apply_overrides(config, {"terms": "[ce, ce]"})


def test_the_sweep_command_refuses_a_bad_value_before_ray_starts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["sweep", "--set", "training.distil.lr=abc", "--run-dir", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert "training.distil.lr: expected a float or null, got 'abc'" in result.output
    assert "Traceback" not in result.output and not run_dir.exists()


def test_tuned_weights_are_converted_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "best_params.json"
    path.write_text('{"badnets": {"alpha": 2, "beta": "0.5"}}')
    assert read_best_params(path) == {"badnets": {"alpha": 2.0, "beta": 0.5}}
    path.write_text('{"badnets": {"alpha": "abc"}}')
    with pytest.raises(ValueError, match=r"best_params\.json: badnets\.alpha: expected a float, got 'abc'"):
        read_best_params(path)
    path.write_text('{"badnets": {"distil_epochs": 2.5}}')
    with pytest.raises(ValueError, match=r"badnets\.distil_epochs: expected an? int"):
        read_best_params(path)
    path.write_text('{"badnets": {"attention_axis": "diagonal"}}')
    with pytest.raises(ValueError, match=r"best_params\.json: badnets\.attention_axis: expected one of map, row"):
        read_best_params(path)
    path.write_text('{"badnets": {"gamma": 1}}')
    with pytest.raises(ValueError, match=r"best_params\.json: .*keys among alpha, beta, distil_lr"):
        read_best_params(path)


def test_tuned_distillation_settings_reach_the_mbtsad_family_only(tmp_path: Path) -> None:
    path = tmp_path / "best_params.json"
    path.write_text('{"sst2/badnets": {"alpha": 2, "distil_lr": "3e-3", "distil_epochs": 3, "attention_axis": "row"}}')
    grid = cells(smoke(), read_best_params(path))
    by_defense = {c.defense: c for c in grid if c.augmentation in ("ts", None)}
    mbtsad = defense_setup(smoke(), by_defense["mbtsad"])
    assert (mbtsad.alpha, mbtsad.beta, mbtsad.attention_axis) == (2.0, 1.0, "row")
    assert (mbtsad.train.lr, mbtsad.train.epochs) == (3e-3, 3)
    assert defense_setup(smoke(), by_defense["cd"]).train.lr == 3e-3
    untuned = defense_setup(smoke(), next(c for c in cells(smoke()) if c.defense == "mbtsad"))
    assert untuned.train.lr != 3e-3 and untuned.attention_axis == "map"
    assert by_defense["ts-ft"].distil_lr is None and defense_setup(smoke(), by_defense["ts-ft"]).train.lr != 3e-3


def test_a_tune_config_is_converted_and_checked() -> None:
    cell = next(c for c in cells(smoke()) if c.defense == "mbtsad")
    config = {"spec": spec_to_dict(smoke()), "cell": dataclasses.asdict(cell)}
    _, tuned = trial_inputs({**config, "alpha": np.float64(0.25)})
    assert tuned.alpha == 0.25 and type(tuned.alpha) is float
    with pytest.raises(ValueError, match=r"^alpha: expected a float or null, got 'abc'$"):
        trial_inputs({**config, "alpha": "abc"})


# ------------------------------------------------------------------------------------- failed rows


def test_a_failed_row_is_written_even_when_its_settings_do_not_load(tmp_path: Path) -> None:
    cell = Cell("sst2", "badnets", "mbtsad", "ts", 0, alpha=1.0, beta=1.0)
    good = {"spec": spec_to_dict(smoke()), "cell": dataclasses.asdict(cell)}
    row = failed_row(good, "RuntimeError: out of memory", 3.0)
    assert (row["trial_id"], row["status"], row["error"]) == (
        trial_id(smoke(), cell),
        "failed",
        "RuntimeError: out of memory",
    )

    bad = copy.deepcopy(good)
    bad["spec"]["training"]["distil"]["lr"] = "abc"  # the very value that failed the trial
    row = failed_row(bad, "TypeError: '<=' not supported", 3.0)
    assert row == failed_row(bad, "TypeError: '<=' not supported", 3.0)  # the same trial, the same row
    assert row["status"] == "failed" and row["trial_id"] != trial_id(smoke(), cell)
    assert row["error"].startswith("TypeError: '<=' not supported; its settings do not load either: ValueError:")
    assert "training.distil.lr: expected a float or null, got 'abc'" in row["error"]
    assert (row["dataset"], row["attack"], row["defense"], row["seed"], row["alpha"]) == (
        "sst2",
        "badnets",
        "mbtsad",
        0,
        1.0,
    )
    garbage = failed_row({"cell": {"seed": "x", "alpha": "y", "dataset": 3}}, "KeyError: 'spec'", 0.0)
    assert garbage["status"] == "failed" and garbage["seed"] is None and garbage["dataset"] is None
    for written in (row, garbage):
        write_row(tmp_path, written)
    rows = read_rows(tmp_path)
    assert sorted(rows["status"].to_list()) == ["failed", "failed"] and rows["error"].null_count() == 0


# ------------------------------------------------------------------------------------- a clean file too small


def test_a_clean_file_too_small_to_hold_out_dev_names_the_file_and_the_remedy(tmp_path: Path, vocab_path) -> None:
    model = save_classifier(tiny_classifier(vocab_path, seed=0), tmp_path / "model", {})
    runner = CliRunner()
    for rows, expected in ((1, "has 1 row,"), (10, "has 10 rows,")):
        clean = tmp_path / f"clean{rows}.csv"
        clean.write_text("text,label\n" + "".join(f"sentence {i},{i % 2}\n" for i in range(rows)))
        result = runner.invoke(cli, ["defend", str(model), "--clean", str(clean), "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert f"{clean.name}: {expected} too few to hold out a 10% dev split" in message, message
        assert "at least 6 rows of one label" in message and "--dev" in message
        assert not (tmp_path / "out").exists()


def test_dataset_settings_reach_that_datasets_cells_only() -> None:
    base = apply_settings(smoke(), {"datasets": ["sst2", "imdb"]})
    spec = apply_settings(
        base,
        {
            "dataset_settings.imdb.training.max_length": 128,
            "dataset_settings.imdb.data.max_test": 50,
            "dataset_settings.imdb.defenses": ["none", "ts-ft", "mbtsad"],
        },
    )
    assert dataset_spec(spec, "imdb").training.max_length == 128 and dataset_spec(spec, "imdb").data.max_test == 50
    assert dataset_spec(spec, "sst2").training == base.training
    assert dataset_spec(dataset_spec(spec, "imdb"), "imdb") == dataset_spec(spec, "imdb")  # applying twice: no change
    by_dataset = {d: {c.defense for c in cells(spec) if c.dataset == d} for d in ("sst2", "imdb")}
    assert by_dataset["imdb"] == {"none", "ts-ft", "mbtsad"} and len(by_dataset["sst2"]) > 3
    sst2 = next(c for c in cells(spec) if c.dataset == "sst2" and c.defense == "mbtsad")
    imdb = next(c for c in cells(spec) if c.dataset == "imdb" and c.defense == "mbtsad")
    assert trial_id(spec, sst2) == trial_id(base, sst2)  # another dataset's settings leave a cell's key alone
    assert trial_id(spec, imdb) != trial_id(base, imdb)
    assert spec_from_dict(spec_to_dict(spec)) == spec


def test_bad_dataset_settings_fail_when_the_spec_is_built() -> None:
    with pytest.raises(ValueError, match=r"dataset_settings\.imdb: seeds cannot differ per dataset"):
        apply_settings(smoke(), {"dataset_settings.imdb.seeds": [1]})
    with pytest.raises(ValueError, match=r"dataset_settings\.imdb: training\.max_length: expected an integer"):
        apply_settings(smoke(), {"dataset_settings.imdb.training.max_length": "long"})
    with pytest.raises(ValueError, match=r"dataset_settings\.imdb: .*unknown defenses \['tsft'\]"):
        apply_settings(smoke(), {"dataset_settings.imdb.defenses": ["tsft"]})


def test_a_broken_tune_trial_folder_names_its_file(tmp_path: Path) -> None:
    trial = tmp_path / "optuna-sst2-badnets-1" / "tune_cell_0a1b2c3d_1_alpha=1"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text('{"alpha": 1.0, "cell": {"dataset": "sst2"')
    with pytest.raises(ValueError, match=r"tune_cell_0a1b2c3d_1_alpha=1/params.json: not a Ray Tune params file"):
        read_tune_trials(tmp_path)
    (trial / "params.json").write_text('{"alpha": 1.0}')
    with pytest.raises(ValueError, match="no tune cell"):
        read_tune_trials(tmp_path)
    (trial / "params.json").write_text('{"alpha": 1.0, "cell": {"dataset": "sst2", "attack": "lwp", "seed": 2}}')
    (trial / "error.txt").write_text("Traceback")
    (row,) = read_tune_trials(tmp_path).iter_rows(named=True)
    assert (row["status"], row["trial"], row["study"], row["objective"]) == ("failed", "0a1b2c3d_1", "sst2-lwp", None)


def _tune_trial(run_dir: Path, experiment: str, number: int, value: float) -> None:
    folder = run_dir / experiment / f"tune_cell_0a1b2c3d_{number}_alpha={value}"
    folder.mkdir(parents=True)
    cell = {"dataset": "sst2", "attack": "badnets", "seed": 0}
    (folder / "params.json").write_text(json.dumps({"alpha": value, "cell": cell, "penalty": 1.0}))
    report = {"objective": value, "asr": value, "cacc": 80.0, "reference_cacc": 80.0}
    (folder / "result.json").write_text(json.dumps(report) + "\n")


def test_tune_trials_carried_without_their_folders_are_kept_and_a_bad_file_is_named(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _tune_trial(first, "optuna-sst2-badnets-1", 1, 30.0)
    _tune_trial(first, "optuna-sst2-badnets-1", 2, 20.0)
    second.mkdir()
    shutil.copy(write_tune_trials(first), second / TRIALS_FILE)  # carried: the rows, not Ray's folders
    _tune_trial(second, "optuna-sst2-badnets-2", 3, 10.0)
    trials = pl.read_parquet(write_tune_trials(second))
    assert trials["objective"].to_list() == [30.0, 20.0, 10.0] and trials["status"].unique().to_list() == ["ok"]
    (second / TRIALS_FILE).write_text("not parquet")
    with pytest.raises(ValueError, match=r"tune_trials.parquet: not a tune trials file"):
        write_tune_trials(second)
    pl.DataFrame({"alpha": [1.0]}).write_parquet(second / TRIALS_FILE)
    with pytest.raises(ValueError, match="its columns are not a tune trials file's"):
        write_tune_trials(second)
