"""CWEA's masked LM offline: an MLM head fitted on the frozen encoder (BERT, RoBERTa or MPNet), cached in the artifact
store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from core.augment import MaskedLM
from core.mlm import MlmHeadConfig, fit_mlm_head
from core.models import sha256_of
from orchestration.store import ArtifactStore, key_fields


def state_digest(model: PreTrainedModel) -> str:
    """The sha256 of every tensor's name, shape and exact bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cached_masked_lm(
    store: ArtifactStore,
    encoder: Path | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: tuple[str, ...],
    *,
    config: MlmHeadConfig,
    seed: int,
) -> MaskedLM:
    """Fit the MLM head once per (encoder weights, texts, settings, seed) and load it from the store after."""
    encoder_key = sha256_of(encoder / "model.safetensors") if isinstance(encoder, Path) else state_digest(encoder)
    fields = {
        "encoder": encoder_key,
        "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
        "config": key_fields(config),
        "seed": seed,
    }

    def build(folder: Path) -> None:
        model = fit_mlm_head(
            encoder if isinstance(encoder, PreTrainedModel) else str(encoder),
            tokenizer,
            texts,
            config=config,
            seed=seed,
        )
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    folder = store.get_or_build("mlm-head", fields, build)
    model = AutoModelForMaskedLM.from_pretrained(folder, use_safetensors=True)
    return MaskedLM(model=model.eval(), tokenizer=tokenizer)
