"""The practitioner's workflows called as functions, without click: a backdoored tiny model built into a folder,
scored, purified and guarded, and the rate search, each on a few hundred real SST-2 sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.data import Splits, TextDataset
from core.models import sha256_of
from orchestration.backdoor import BackdooredModel, build_backdoored_model
from orchestration.evaluation import evaluate_model
from orchestration.model_files import read_card
from orchestration.purify import REPORT, purify_model
from orchestration.rate_search import search_rates

FAST = {"epochs": 1, "lr": 1e-3, "max_length": 32}


def write_csv(path: Path, data: TextDataset) -> Path:
    path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(data.texts, data.labels, strict=True)))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BackdooredModel:
    out = tmp_path_factory.mktemp("mb") / "model"
    return build_backdoored_model(out, model="tiny", max_train=300, training=FAST, overrides={"poison.rate": "0.2"})


def test_a_built_model_is_saved_with_its_card_and_scores_the_same_when_evaluated(built: BackdooredModel) -> None:
    card = read_card(built.folder)
    assert card == json.loads(json.dumps(built.card)) and card["poison"]["rate"] == 0.2
    assert (card["attack"], card["base_model"], card["max_train"]) == ("badnets", "tiny", 300)
    assert evaluate_model(built.folder).percents() == card["scores"] == built.evaluation.percents()


def test_purify_model_writes_the_purified_folder_and_its_report(
    built: BackdooredModel, sst2_small: Splits, tmp_path: Path
) -> None:
    parts = {"clean": sst2_small.train, "dev": sst2_small.dev, "test": sst2_small.test}
    files = {name: write_csv(tmp_path / f"{name}.csv", part) for name, part in parts.items()}
    out = tmp_path / "purified"
    done = purify_model(built.folder, out=out, method="cft", training=FAST, **files)
    assert done.purified and json.loads((out / REPORT).read_text()) == json.loads(json.dumps(done.report))
    assert done.report["clean_samples"] == len(sst2_small.train) and done.report["config"]["train"]["epochs"] == 1
    card = read_card(out)
    assert (card["defense"], card["attack"], card["scores"]) == ("cft", "badnets", done.after.percents())
    weights = {"model.safetensors": sha256_of(built.folder / "model.safetensors")}
    source = {"folder": str(built.folder.resolve()), "weights": weights}
    assert card["suspect"] == done.report["suspect_source"] == source
    assert evaluate_model(out, test=files["test"]).percents() == done.after.percents()
    assert evaluate_model(built.folder, test=files["test"]).percents() == done.before.percents()


def test_a_detection_defence_guards_the_suspect_and_saves_no_model(
    built: BackdooredModel, sst2_small: Splits, tmp_path: Path
) -> None:
    clean = write_csv(tmp_path / "clean.csv", sst2_small.train)
    done = purify_model(built.folder, out=tmp_path / "strip", method="strip", clean=clean, triggers=("cf", "mn"))
    assert not done.purified and not (tmp_path / "strip" / "model.safetensors").exists()
    assert (done.report["trigger"]["triggers"], done.report["trigger"]["target"]) == (("cf", "mn"), 1)
    assert done.after.frr is not None and done.before.frr is None
    with pytest.raises(ValueError, match="fine-mixing needs the pre-trained weights"):
        purify_model(built.folder, out=tmp_path / "mix", method="fine-mixing", clean=clean)
    assert not (tmp_path / "mix").exists()


def test_search_rates_keeps_a_candidate_and_reports_every_curve(tmp_path: Path) -> None:
    out = tmp_path / "rates.json"
    choice = search_rates(out, model="tiny", rates=(1e-4, 1e-3), epochs=1, max_length=32, max_train=200)
    assert choice.chosen in (1e-4, 1e-3) and [c.lr for c in choice.curves] == [1e-4, 1e-3]
    report = json.loads(out.read_text())
    assert report["chosen"] == choice.chosen and report["sweep_settings"] == choice.sweep_settings()
    assert f"training.distil.lr={25 * choice.chosen:g}" in choice.sweep_settings()
