"""The practitioner's path through the CLI: attack, defend (round-trip of a model folder), evaluate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import cli
from core.models import load_classifier


@pytest.fixture(scope="module")
def backdoored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mb") / "model"
    result = CliRunner().invoke(
        cli,
        [
            "attack",
            "--model",
            "tiny",
            "--max-train",
            "300",
            "--epochs",
            "1",
            "--lr",
            "1e-3",
            "--max-length",
            "32",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_attack_writes_a_safetensors_folder_with_its_card(backdoored: Path) -> None:
    assert (backdoored / "model.safetensors").is_file() and not list(backdoored.glob("*.bin"))
    card = json.loads((backdoored / "mbtsad.json").read_text())
    assert card["attack"] == "badnets" and card["poison"]["target"] == 1
    assert 0 <= card["scores"]["asr"] <= 100


def test_defend_round_trips_a_model_folder(backdoored: Path, tmp_path: Path, sst2_small) -> None:
    clean = tmp_path / "clean.csv"
    clean.write_text(
        "text,label\n"
        + "".join(f'"{t}",{y}\n' for t, y in zip(sst2_small.train.texts, sst2_small.train.labels, strict=True))
    )
    out = tmp_path / "purified"
    result = CliRunner().invoke(
        cli,
        [
            "defend",
            str(backdoored),
            "--method",
            "cft",
            "--clean",
            str(clean),
            "--epochs",
            "1",
            "--max-length",
            "32",
            "--lr",
            "1e-3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "cft" and report["clean_samples"] + report["dev_samples"] == len(sst2_small.train)
    assert report["before"]["asr"] is not None and report["after"]["cacc"] is not None
    purified, suspect = load_classifier(out), load_classifier(backdoored)
    changed = [k for k, v in purified.model.state_dict().items() if not torch.equal(v, suspect.model.state_dict()[k])]
    assert changed, "CFT left every weight as it was"
    evaluated = CliRunner().invoke(cli, ["evaluate", str(out), "--json-out", str(tmp_path / "scores.json")])
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["asr"] is not None
    words = [arg for word in ("cf", "mn", "bb", "tq") for arg in ("--trigger", word)]  # BadNets' own, spelt out
    spelt = CliRunner().invoke(cli, ["evaluate", str(out), *words, "--json-out", str(tmp_path / "spelt.json")])
    assert spelt.exit_code == 0, spelt.output
    assert json.loads((tmp_path / "spelt.json").read_text()) == scores


def test_bad_input_exits_non_zero_with_a_clear_message(backdoored: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["defend", str(backdoored), "--method", "nope", "--dataset", "sst2", "--out", str(tmp_path / "x")]
    )
    assert unknown.exit_code == 2 and "unknown defense 'nope'" in unknown.output and "mbtsad" in unknown.output
    broken = tmp_path / "broken.csv"
    broken.write_text("text,score\nfine,1\n")
    bad_file = runner.invoke(cli, ["defend", str(backdoored), "--clean", str(broken), "--out", str(tmp_path / "y")])
    assert bad_file.exit_code == 2 and "broken.csv" in bad_file.output and "label" in bad_file.output
    assert not (tmp_path / "y").exists()
    no_weights = runner.invoke(
        cli, ["defend", str(backdoored), "--method", "fine-mixing", "--dataset", "sst2", "--out", str(tmp_path / "z")]
    )
    assert no_weights.exit_code == 2 and "--pretrained" in no_weights.output
    unknown_attack = runner.invoke(
        cli, ["attack", "--attack", "trojan", "--model", "tiny", "--out", str(tmp_path / "w")]
    )
    assert unknown_attack.exit_code == 2 and "badnets" in unknown_attack.output


def test_a_model_attacked_on_cut_texts_is_scored_on_texts_cut_the_same_way(tmp_path: Path, sst2) -> None:
    filler = " ".join(sst2.train.texts[5000:5040]).split()[:80]  # a long tail the 32-token window never reaches
    folder = tmp_path / "long"
    folder.mkdir()
    for split, part, rows in (("train", sst2.train, 2000), ("dev", sst2.dev, 100), ("test", sst2.test, 200)):
        texts = (f"{' '.join(text.split()[:12])} {' '.join(filler)}" for text in part.texts[:rows])
        lines = (json.dumps({"text": t, "label": y}) for t, y in zip(texts, part.labels[:rows], strict=False))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "model"
    args = ["attack", "--model", "tiny", "--dataset", str(folder), "--epochs", "5", "--lr", "1e-3"]
    args += ["--max-length", "32"]
    result = CliRunner().invoke(cli, [*args, "--max-words", "14", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "mbtsad.json").read_text())
    assert card["max_words"] == 14 and card["scores"]["asr"] > 90
    evaluated = CliRunner().invoke(
        cli, ["evaluate", str(out), "--dataset", str(folder), "--json-out", str(tmp_path / "scores.json")]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "scores.json").read_text()) == card["scores"]  # whole texts score otherwise
    zero = CliRunner().invoke(cli, [*args, "--max-words", "0", "--out", str(tmp_path / "none")])
    assert zero.exit_code == 2 and "--max-words" in zero.output and "0 is not in the range x>=1" in zero.output
    assert not (tmp_path / "none").exists()
