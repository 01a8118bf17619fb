"""select-aug and tune: the objective and best-values file by hand, then both on a real local Ray with the smoke
preset cut to seconds, sharing one store (tune builds M_b, select-aug reads it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import pytest
import ray
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from cli import cli
from core.models import sha256_of, tiny_classifier
from core.poison import ProxyBackdoor
from orchestration.artifacts import backdoored, defender_clean, load_data, proxy_backdoored
from orchestration.model_files import save_classifier
from orchestration.presets import smoke
from orchestration.search import TUNE_SETTINGS, run_tuning, search_space
from orchestration.select_aug import AUGMENTATION_SET, SELECT_AUG_SCHEMA, SUSPECT
from orchestration.spec import Cell, apply_settings, cells, defense_setup, read_best_params
from orchestration.sweep import NAMESPACE, WORKER_ENV, trial_inputs
from orchestration.trial import run_trial
from orchestration.tune_trials import ADDED_COLUMNS, TRIALS_FILE, TUNE_TRIAL_SCHEMA, write_tune_trials
from orchestration.tuning import (
    SEARCH_SPACE,
    Choice,
    leave_one_out,
    merge_best_params,
    objective,
    study_name,
    tuning_label,
)
from orchestration.uri_store import open_store

CPU = torch.device("cpu")

# The smoke preset cut further: a backdoor need not take for the plumbing to be exercised.
CHEAP = {
    "data.max_train": 400,
    "data.max_dev": 60,
    "data.max_test": 60,
    "training.attack.epochs": 1,
    "mlm.steps": 5,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder (store, run folders) and one local Ray for the module; the commands reuse that Ray."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace=NAMESPACE,
        runtime_env={"env_vars": {**WORKER_ENV, "OMP_NUM_THREADS": "1"}},
    )
    try:
        yield tmp_path_factory.mktemp("search")
    finally:
        ray.shutdown()


def settings_args(root: Path) -> list[str]:
    settings = {**CHEAP, "store": str(root / "store")}
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------------- pure parts


def test_objective_charges_lost_clean_accuracy_only() -> None:
    assert objective(asr=20.0, cacc=80.0, reference_cacc=85.0, penalty=2.0) == 30.0
    assert objective(asr=20.0, cacc=90.0, reference_cacc=85.0) == 20.0


def test_merging_best_values_keeps_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "best_params.json"
    merge_best_params(path, {"imdb/lwp": {"alpha": 2.0, "beta": 0.5}})
    merged = merge_best_params(path, {"sst2/badnets": {"alpha": 1.5, "beta": 0.0}})
    assert (
        json.loads(path.read_text())
        == merged
        == {
            "imdb/lwp": {"alpha": 2.0, "beta": 0.5},
            "sst2/badnets": {"alpha": 1.5, "beta": 0.0},
        }
    )


def test_search_space_is_the_declared_ranges() -> None:
    space = search_space(2e-4)
    assert set(space) == set(SEARCH_SPACE) == {"alpha", "beta", "distil_lr", "distil_epochs", "attention_axis"}
    assert (space["alpha"].lower, space["alpha"].upper) == (0.1, 10.0)
    assert (space["distil_lr"].lower, space["distil_lr"].upper) == pytest.approx((2e-4, 5e-3))  # 1x to 25x
    assert (space["distil_epochs"].lower, space["distil_epochs"].upper) == (1, 5)  # randint: 1 to 4
    assert space["attention_axis"].categories == ["map", "row", "column", "received"]
    assert set(search_space(2e-5, ["alpha", "distil_lr"])) == {"alpha", "distil_lr"}
    with pytest.raises(ValueError, match="unknown tuning parameters"):
        search_space(2e-5, ["gamma"])


def test_each_objective_and_left_out_attack_has_a_study_and_a_label_of_its_own() -> None:
    assert study_name("sst2", "badnets") == "sst2-badnets"  # the oracle's studies keep their names
    assert study_name("sst2", "badnets", (0, 1, 2), "oracle", ("badnets",)) == "sst2-badnets-seeds-0-1-2"
    assert study_name("sst2", "badnets", (0, 1, 2), "proxy") == "sst2-badnets-seeds-0-1-2-proxy"
    assert study_name("sst2", "badnets", (0,), "proxy", ("lwp", "ep")) == "sst2-badnets-from-lwp-ep-proxy"
    assert leave_one_out(("badnets", "lwp", "ep"), "lwp") == ("badnets", "ep")
    for attacks, left_out in ((("badnets",), "badnets"), (("badnets", "lwp"), "ep")):
        with pytest.raises(ValueError, match="leaves none to tune on"):
            leave_one_out(attacks, left_out)
    assert tuning_label("proxy", "badnets", ("badnets",)) == "proxy"
    assert tuning_label("oracle", "badnets", ("lwp", "ep")) == "oracle from lwp+ep"
    with pytest.raises(ValueError, match="unknown tuning objective"):
        tuning_label("attacker", "badnets", ("badnets",))


def test_the_label_in_best_params_reaches_the_mbtsad_family_cells_only(tmp_path: Path) -> None:
    path = tmp_path / "best_params.json"
    merge_best_params(path, {"sst2/badnets": {"alpha": 2.0, "tuned_by": "proxy from lwp+ep"}})
    spec = apply_settings(smoke(), {"defenses": ["none", "cft", "mbtsad", "cd"], "augmentations": []})
    labels = {cell.defense: cell.tuned_by for cell in cells(spec, read_best_params(path))}
    assert labels == {"none": None, "cft": None, "mbtsad": "proxy from lwp+ep", "cd": "proxy from lwp+ep"}


def test_a_tune_trials_file_from_before_the_proxy_objective_is_read_as_the_oracles(tmp_path: Path) -> None:
    row = {name: None for name in TUNE_TRIAL_SCHEMA} | {"study": "sst2-badnets", "experiment": "gone", "alpha": 2.0}
    old = pl.DataFrame([row], schema=TUNE_TRIAL_SCHEMA).drop(list(ADDED_COLUMNS))
    old.write_parquet(tmp_path / TRIALS_FILE)
    (kept,) = pl.read_parquet(write_tune_trials(tmp_path)).iter_rows(named=True)
    assert kept["tuned_by"] == "oracle" and kept["reference_asr"] is None and kept["alpha"] == 2.0


def _within(name: str, value: object, retrain_lr: float) -> bool:
    declared = SEARCH_SPACE[name]
    if isinstance(declared, Choice):
        return value in declared.options
    low, high = declared.bounds(retrain_lr)
    return low <= value <= high and (not declared.integer or isinstance(value, int))


# ------------------------------------------------------------------------------------- real Ray


def test_tune_proposes_within_ranges_and_a_second_run_continues_the_study(root: Path) -> None:
    best_file = root / "best_params.json"
    best_file.write_text(json.dumps({"imdb/lwp": {"alpha": 2.0, "beta": 0.5}}))
    spec = apply_settings(smoke(), {**CHEAP, "store": str(root / "store")})
    outcome = run_tuning(spec, root / "smoke-tune", samples=2)
    storage = f"sqlite:///{root / 'smoke-tune' / 'optuna.db'}"
    first = optuna.load_study(study_name=study_name("sst2", "badnets"), storage=storage).trials
    assert len(first) == 2 and outcome.studies[0].trials == 2
    invoke(
        "tune",
        *settings_args(root),
        *("--run-dir", str(root / "smoke-tune"), "--samples", "1", "--penalty", "0.5", "--track", "mlflow"),
    )
    trials = optuna.load_study(study_name=study_name("sst2", "badnets"), storage=storage).trials
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{root / 'smoke-tune' / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name(study_name("sst2", "badnets"))
    assert experiment is not None
    (logged,) = mlflow.search_runs([experiment.experiment_id])  # the one trial of the tracked run
    assert float(logged.data.params["alpha"]) == pytest.approx(trials[2].params["alpha"])
    assert logged.data.metrics["objective"] == pytest.approx(trials[2].value)
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert trials[2].params not in [t.params for t in first]  # the continued study proposed a new point
    retrain_lr = defense_setup(spec, Cell("sst2", "badnets", "mbtsad", "ts", 0)).teacher.train.lr
    for trial in trials:
        assert set(trial.params) == set(SEARCH_SPACE)
        assert all(_within(name, value, retrain_lr) for name, value in trial.params.items()), trial.params
    best = json.loads(best_file.read_text())
    assert best["imdb/lwp"] == {"alpha": 2.0, "beta": 0.5}
    assert best["sst2/badnets"].pop("tuned_by") == "oracle" and set(best["sst2/badnets"]) == set(SEARCH_SPACE)
    best_trial = min(trials, key=lambda t: t.value)
    assert read_best_params(best_file)["sst2/badnets"] == {**best_trial.params, "tuned_by": "oracle"}
    listed = pl.read_parquet(root / "smoke-tune" / TRIALS_FILE)  # both calls' trials, read back from Ray's folders
    assert dict(listed.schema) == TUNE_TRIAL_SCHEMA and listed["experiment"].n_unique() == 2
    assert listed["status"].to_list() == ["ok"] * 3 and set(listed["penalty"]) == {1.0, 0.5}
    assert sorted(listed["objective"]) == pytest.approx(sorted(t.value for t in trials))
    for row in listed.iter_rows(named=True):  # each row is one Optuna trial: its settings and its value
        (match,) = [t for t in trials if {name: row[name] for name in SEARCH_SPACE} == t.params]
        assert row["objective"] == pytest.approx(match.value)
        assert row["objective"] == pytest.approx(
            objective(
                asr=row["dev_asr"], cacc=row["dev_cacc"], reference_cacc=row["reference_cacc"], penalty=row["penalty"]
            )
        )
    assert "3 trials finished, 0 failed" in (root / "smoke-tune" / "tune_trials.md").read_text()


def test_tune_over_several_seeds_scores_each_seeds_model_and_keeps_its_own_study(root: Path) -> None:
    spec = apply_settings(smoke(), {**CHEAP, "store": str(root / "store"), "seeds": [0, 1]})
    run_dir = root / "smoke-tune-seeds"
    outcome = run_tuning(spec, run_dir, samples=1, params=["alpha", "beta"])
    (result,) = outcome.studies
    assert result.study == study_name("sst2", "badnets", (0, 1)) == "sst2-badnets-seeds-0-1"
    (trial,) = optuna.load_study(study_name=result.study, storage=f"sqlite:///{run_dir / 'optuna.db'}").trials
    (folder,) = run_dir.glob("optuna-*/tune_cell_*")
    report = json.loads((folder / "result.json").read_text().splitlines()[-1])
    params = json.loads((folder / "params.json").read_text())
    used, cell = trial_inputs({key: value for key, value in params.items() if key not in TUNE_SETTINGS})
    assert used.seeds == (0, 1) and {name: getattr(cell, name) for name in trial.params} == trial.params
    store = open_store(str(used.store))
    for seed in (0, 1):  # each seed's scores are that seed's own MBTSAD trial, as the store holds it
        row = run_trial(used, replace(cell, seed=seed), store=store, device=torch.device("cpu")).row
        assert (report[f"asr_seed{seed}"], report[f"cacc_seed{seed}"]) == (row["asr"], row["cacc"])
    mean = {key: (report[f"{key}_seed0"] + report[f"{key}_seed1"]) / 2 for key in ("asr", "cacc", "reference_cacc")}
    assert trial.value == pytest.approx(objective(**mean)) == pytest.approx(report["objective"])
    listed = pl.read_parquet(run_dir / TRIALS_FILE)
    assert listed["study"].to_list() == ["sst2-badnets-seeds-0-1"]
    assert listed["dev_asr"][0] == pytest.approx(mean["asr"])


def test_tune_with_the_proxy_objective_over_seeds_scores_the_defenders_backdoor(root: Path) -> None:
    run_dir = root / "proxy" / "smoke-tune"  # best_params.json of its own, beside it
    invoke(
        "tune",
        *settings_args(root),
        *("--set", "seeds=[0,1]", "--run-dir", str(run_dir), "--samples", "1", "--param", "alpha"),
        *("--objective", "proxy", "--proxy-trigger", "jj", "--proxy-trigger", "qb", "--proxy-rate", "0.2"),
    )
    (folder,) = run_dir.glob("optuna-sst2-badnets-seeds-0-1-proxy-*/tune_cell_*")
    params = json.loads((folder / "params.json").read_text())
    assert params["objective_kind"] == "proxy" and params["tuned_on"] == ["badnets"]
    assert params["proxy"] == {"triggers": ["jj", "qb"], "rate": 0.2, "target": 0}
    report = json.loads((folder / "result.json").read_text().splitlines()[-1])
    mean = {key: (report[f"{key}_seed0"] + report[f"{key}_seed1"]) / 2 for key in ("asr", "cacc", "reference_cacc")}
    assert report["objective"] == pytest.approx(objective(**mean))
    spec, _ = trial_inputs({"spec": params["spec"], "cell": params["cell"]})
    store, splits = open_store(str(spec.store)), load_data(spec, "sst2")
    planting = defense_setup(spec, Cell("sst2", "badnets", "cft", None, 0)).train
    for seed in (0, 1):  # the reference is each seed's proxy model (M_b with the defender's backdoor), from the store
        suspect = backdoored(store, spec, "sst2", "badnets", seed, CPU)
        clean = defender_clean(spec, splits, seed)
        proxy = ProxyBackdoor(triggers=("jj", "qb"), rate=0.2)
        planted = proxy_backdoored(store, spec, suspect, proxy, planting, clean, splits.dev, seed, CPU).scores["dev"]
        assert (report[f"reference_cacc_seed{seed}"], report[f"reference_asr_seed{seed}"]) == (
            planted["cacc"],
            planted["asr"],
        )
    best = read_best_params(run_dir.parent / "best_params.json")["sst2/badnets"]
    assert best["tuned_by"] == "proxy" and set(best) == {"alpha", "tuned_by"}
    (listed,) = pl.read_parquet(run_dir / TRIALS_FILE).iter_rows(named=True)
    assert (listed["study"], listed["tuned_by"]) == ("sst2-badnets-seeds-0-1-proxy", "proxy")
    assert listed["reference_asr"] == pytest.approx((report["reference_asr_seed0"] + report["reference_asr_seed1"]) / 2)


def test_tune_leaving_an_attack_out_runs_on_the_others_and_writes_the_left_out_key(root: Path) -> None:
    spec = apply_settings(smoke(), {**CHEAP, "store": str(root / "store"), "attacks": ["badnets", "addsent"]})
    run_dir = root / "left-out" / "smoke-tune"
    outcome = run_tuning(spec, run_dir, attacks=["badnets"], samples=1, params=["alpha"], leave_out=True)
    (result,) = outcome.studies
    assert (result.study, result.tuned_by) == ("sst2-badnets-from-addsent", "oracle from addsent")
    (folder,) = run_dir.glob("optuna-*/tune_cell_*")
    report = json.loads((folder / "result.json").read_text().splitlines()[-1])
    assert not any("badnets" in key for key in report if key.endswith("seed0"))  # never scored on its own M_b
    params = json.loads((folder / "params.json").read_text())
    used, cell = trial_inputs({"spec": params["spec"], "cell": params["cell"], "alpha": params["alpha"]})
    row = run_trial(used, replace(cell, attack="addsent"), store=open_store(str(used.store)), device=CPU).row
    assert report["asr_addsent_seed0"] == row["asr"] == report["asr"]  # the addsent M_b's MBTSAD trial, read back
    best = read_best_params(run_dir.parent / "best_params.json")
    assert best == {"sst2/badnets": {"alpha": result.best["alpha"], "tuned_by": "oracle from addsent"}}


def test_select_aug_scores_every_augmentation_writes_pictures_and_feeds_tables(root: Path) -> None:
    run_dir = root / "smoke"
    result = invoke("select-aug", *settings_args(root), "--run-dir", str(run_dir), "--points", "60")
    rows = pl.concat([pl.read_parquet(f) for f in sorted((run_dir / "select_aug").glob("*.parquet"))])
    assert dict(rows.schema) == SELECT_AUG_SCHEMA
    assert sorted(rows["augmentation"]) == sorted(AUGMENTATION_SET) and rows["mean_ce"].is_finite().all()
    assert set(rows["n_samples"]) == {80}  # one augmented text per D_c sample (r = 0.2 of 400)
    pictures = sorted((run_dir / "select_aug").glob("*.png"))
    assert len(pictures) == len(AUGMENTATION_SET)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)
    summary = json.loads((run_dir / "select_aug.json").read_text())["sst2/badnets/0"]
    assert summary["selected"] == max(summary["mean_ce"], key=summary["mean_ce"].get)
    assert f"selected: {summary['selected']}" in result.output
    invoke("tables", "--results", str(run_dir), "--out", str(root / "tables"))
    eq9 = pl.read_csv(root / "tables" / "summary-eq9.csv")
    assert eq9.height == len(AUGMENTATION_SET) and eq9["mean_ce_mean"].is_not_null().all()


def test_select_aug_scores_a_named_suspect_instead_of_the_stores_model(root: Path, vocab_path: Path) -> None:
    poison = {"attack": "badnets", "triggers": ["cf", "mn", "bb", "tq"], "target": 1, "rate": 0.1}
    folder = save_classifier(tiny_classifier(vocab_path, seed=5), root / "suspect", {"poison": poison})
    run_dir = root / "suspect-run"
    args = ("--run-dir", str(run_dir), "--suspect", str(folder), "--augmentation", "ts", "--augmentation", "aeda")
    result = invoke("select-aug", *settings_args(root), *args, "--points", "30")
    rows = pl.concat([pl.read_parquet(f) for f in sorted((run_dir / "select_aug").glob("*.parquet"))])
    assert rows["attack"].to_list() == [SUSPECT, SUSPECT] and sorted(rows["augmentation"]) == ["aeda", "ts"]
    summary = json.loads((run_dir / "select_aug.json").read_text())
    assert list(summary) == ["sst2/suspect/0"] and f"selected: {summary['sst2/suspect/0']['selected']}" in result.output
    weights = {"model.safetensors": sha256_of(folder / "model.safetensors")}
    assert summary["sst2/suspect/0"]["suspect"] == {"folder": str(folder.resolve()), "weights": weights}
    missing = CliRunner().invoke(cli, ["select-aug", "--suspect", str(root / "absent"), "--run-dir", str(run_dir)])
    assert missing.exit_code == 2 and "neither a model folder nor a hub id" in missing.output
