"""Models by Hugging Face hub id, offline: a tiny BERT written into a temporary cache laid out as huggingface_hub
lays it out (models--org--name/{refs/main, snapshots/<commit>/..., blobs/}), and nothing reaching a network."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from click.testing import CliRunner

from cli import cli
from core.data import Splits
from core.models import Classifier, ModelFileError, tiny_classifier
from orchestration.artifacts import model_identity, start_model
from orchestration.hub import hub_model, open_classifier, resolve_model
from orchestration.model_files import save_classifier
from orchestration.presets import paper, smoke
from orchestration.select_aug import SUSPECT, score_augmentation
from orchestration.spec import SweepSpec, apply_settings
from orchestration.store import content_key
from orchestration.sweep import resolve_locations
from orchestration.uri_store import open_store

REPO = "org/tiny-bert"
FIRST = "1" * 40
SECOND = "2" * 40


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, offline. huggingface_hub reads its environment once at import, so the test sets the
    variables for anything started after it and the library's constants for this process."""
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return folder


def write_snapshot(cache: Path, repo: str, commit: str, files: Path, *, ref: str | None = "main") -> Path:
    """Each file of `files` as a blob named by its sha256, linked from snapshots/<commit>/; `ref` points at it."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for file in sorted(files.iterdir()):
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
    if ref is not None:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot


def saved(classifier: Classifier, folder: Path) -> Path:
    classifier.model.save_pretrained(folder, safe_serialization=True)
    classifier.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def published(cache: Path, vocab_path: Path, tmp_path: Path) -> Classifier:
    """The tiny BERT at commit FIRST, which refs/main names."""
    model = tiny_classifier(vocab_path, seed=3)
    write_snapshot(cache, REPO, FIRST, saved(model, tmp_path / "first"))
    return model


def same_weights(a: Classifier, b: Classifier) -> bool:
    ours, theirs = a.model.state_dict(), b.model.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_names_that_are_hub_ids(tmp_path: Path) -> None:
    assert hub_model("bert-base-uncased").repo == "bert-base-uncased"
    assert hub_model(f"{REPO}@v1.0").revision == "v1.0"
    assert hub_model("tiny") is None and hub_model("minilm") is None
    assert hub_model(tmp_path) is None  # an existing folder wins over an id that spells the same
    assert hub_model("/no/such/folder") is None and hub_model("a/b/c") is None


def test_an_id_in_the_cache_resolves_to_its_commit_and_loads_offline(published: Classifier) -> None:
    assert resolve_model(REPO) == resolve_model(f"{REPO}@main") == resolve_model(f"{REPO}@{FIRST}") == f"{REPO}@{FIRST}"
    loaded = open_classifier(f"{REPO}@{FIRST}", seed=0)
    assert same_weights(loaded, published)
    assert loaded.tokenizer("a cf film")["input_ids"] == published.tokenizer("a cf film")["input_ids"]


def test_the_spec_pins_the_commit_and_the_keys_name_it(
    published: Classifier, cache: Path, vocab_path: Path, tmp_path: Path, data_dir: Path
) -> None:
    spec = resolve_locations(SweepSpec(name="hub", model=REPO, data_dir=str(data_dir)), tmp_path / "runs" / "hub")
    assert spec.model == f"{REPO}@{FIRST}"
    assert model_identity(spec) == {"model": "hub", "repo": REPO, "commit": FIRST}
    assert same_weights(start_model(spec, 0), published)
    # main moves on to new weights: the pinned spec still loads the first, an unpinned one the second
    write_snapshot(cache, REPO, SECOND, saved(tiny_classifier(vocab_path, seed=4), tmp_path / "second"))
    assert same_weights(start_model(spec, 0), published)
    moved = resolve_locations(SweepSpec(name="hub", model=REPO, data_dir=str(data_dir)), tmp_path / "runs" / "hub")
    assert moved.model == f"{REPO}@{SECOND}"
    assert content_key("backdoored", {"model": model_identity(moved)}) != content_key(
        "backdoored", {"model": model_identity(spec)}
    )


def test_the_attack_command_takes_an_id_and_its_card_names_the_commit(published: Classifier, tmp_path: Path) -> None:
    out = tmp_path / "mb"
    args = ["attack", "--model", REPO, "--max-train", "64", "--epochs", "1", "--max-length", "32", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "mbtsad.json").read_text())["base_model"] == f"{REPO}@{FIRST}"


def test_an_id_not_in_the_cache_fails_naming_it_and_how_to_fetch_it(cache: Path) -> None:
    with pytest.raises(ModelFileError) as caught:
        resolve_model("org/absent@v2")
    message = str(caught.value)
    assert message.startswith("org/absent@v2: ")
    assert "hf download org/absent --revision v2 --include '*.safetensors'" in message


def test_a_hub_model_without_safetensors_is_refused(cache: Path, tiny: Classifier, tmp_path: Path) -> None:
    files = tmp_path / "bin"
    files.mkdir()
    torch.save(tiny.model.state_dict(), files / "pytorch_model.bin")
    tiny.model.config.save_pretrained(files)
    write_snapshot(cache, "org/pickled", FIRST, files)
    with pytest.raises(ModelFileError, match=f"org/pickled@{FIRST}: .*no safetensors weights"):
        open_classifier("org/pickled", seed=0)


def test_a_folder_still_resolves_to_its_absolute_path(tiny: Classifier, tmp_path: Path, monkeypatch) -> None:
    folder = saved(tiny, tmp_path / "local")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("local") == str(folder)
    with pytest.raises(ValueError, match="'empty' is not a model folder"):
        (tmp_path / "empty").mkdir()
        resolve_model("empty")


def test_paper_names_bert_base_by_hub_id() -> None:
    assert paper().model == "bert-base-uncased"
    assert hub_model(paper().model) is not None


# ------------------------------------------------------------------------------------- a suspect named by hub id


def clean_files(folder: Path, splits: Splits) -> list[str]:
    """`--clean`, `--dev` and `--test` options over small CSV files of real SST-2 sentences."""
    options = []
    for name, part in (("clean", splits.train), ("dev", splits.dev), ("test", splits.test)):
        rows = "".join(f'"{t}",{y}\n' for t, y in zip(part.texts, part.labels, strict=True))
        (folder / f"{name}.csv").write_text("text,label\n" + rows)
        options += [f"--{name}", str(folder / f"{name}.csv")]
    return options


def test_a_hub_model_without_our_card_is_evaluated_and_defended_by_id(
    published: Classifier, sst2_small: Splits, tmp_path: Path
) -> None:
    files = clean_files(tmp_path, sst2_small)
    runner = CliRunner()
    scores = []
    for name in (REPO, f"{REPO}@main", f"{REPO}@{FIRST}"):
        out = tmp_path / f"scores-{len(scores)}.json"
        result = runner.invoke(cli, ["evaluate", name, "--test", files[-1], "--json-out", str(out)])
        assert result.exit_code == 0, result.output
        assert "ASR needs --attack NAME or --trigger WORD" in " ".join(result.output.split())
        scores.append(json.loads(out.read_text()))
    assert scores[0] == scores[1] == scores[2] and scores[0]["asr"] is None and scores[0]["cacc"] is not None
    out = tmp_path / "purified"
    args = ["defend", REPO, "--method", "cft", *files, "--epochs", "1", "--lr", "1e-3", "--max-length", "32"]
    result = runner.invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    source = {"repo": REPO, "revision": None, "commit": FIRST}
    assert report["suspect"] == REPO and report["suspect_source"] == source
    assert report["trigger"] is None and report["before"]["asr"] is None and "--trigger" in report["asr"]
    assert report["before"]["cacc"] == scores[0]["cacc"] and report["after"]["clean_flip"] is not None
    card = json.loads((out / "mbtsad.json").read_text())
    assert card["suspect"] == source and card["defense"] == "cft" and "poison" not in card


def test_our_card_published_with_a_hub_model_names_its_trigger(
    cache: Path, tiny: Classifier, sst2_small: Splits, tmp_path: Path
) -> None:
    poison = {"attack": "badnets", "triggers": ["cf", "mn", "bb", "tq"], "target": 1, "rate": 0.1}
    folder = save_classifier(tiny, tmp_path / "mb", {"attack": "badnets", "poison": poison})
    write_snapshot(cache, "org/backdoored", SECOND, folder)
    test = clean_files(tmp_path, sst2_small)[-1]
    by_id = CliRunner().invoke(cli, ["evaluate", "org/backdoored", "--test", test, "--json-out", str(tmp_path / "h")])
    by_folder = CliRunner().invoke(cli, ["evaluate", str(folder), "--test", test, "--json-out", str(tmp_path / "f")])
    assert by_id.exit_code == 0 and by_folder.exit_code == 0, by_id.output + by_folder.output
    assert json.loads((tmp_path / "h").read_text()) == json.loads((tmp_path / "f").read_text())
    assert json.loads((tmp_path / "h").read_text())["asr"] is not None and "ASR needs" not in by_id.output


def test_a_suspect_missing_from_the_cache_fails_with_the_download_hint(published: Classifier, tmp_path: Path) -> None:
    runner = CliRunner()
    cases = {
        "org/absent": "hf download org/absent --include '*.safetensors'",
        f"{REPO}@{SECOND}": f"hf download {REPO} --revision {SECOND} --include '*.safetensors'",
        f"{REPO}@v9": f"hf download {REPO} --revision v9 --include '*.safetensors'",
    }
    for name, hint in cases.items():
        for command in (["evaluate", name], ["defend", name, "--dataset", "sst2", "--out", str(tmp_path / "out")]):
            result = runner.invoke(cli, command)
            assert result.exit_code == 2, (command, result.output)
            message = " ".join(result.output.split())
            assert f"Error: {name}: " in message and hint in message and "Traceback" not in message, message
    assert not (tmp_path / "out").exists()


def test_select_aug_scores_a_suspect_named_by_hub_id(published: Classifier, tmp_path: Path) -> None:
    spec = apply_settings(smoke(), {"data.max_train": 200, "data.max_dev": 40, "data.max_test": 40})
    cell = {"dataset": "sst2", "attack": SUSPECT, "augmentation": "ts", "seed": 0}
    store, cpu = open_store(str(tmp_path / "store")), torch.device("cpu")
    by_id = score_augmentation(spec, **cell, store=store, device=cpu, points=20, suspect=f"{REPO}@{FIRST}")
    by_folder = score_augmentation(spec, **cell, store=store, device=cpu, points=20, suspect=str(tmp_path / "first"))
    assert by_id.n_samples == 40 and by_id.mean_ce == by_folder.mean_ce > 0 and by_id.png[:4] == b"\x89PNG"
