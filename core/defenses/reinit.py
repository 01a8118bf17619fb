"""Reinitialization (NeuBA's baseline, as MBTSAD describes it): reset the last encoder layer, then CFT."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedModel

from core.defenses.base import Defense, DefenseInputs
from core.defenses.cft import CftConfig, EpochCallback, StepCallback, clean_finetune
from core.models import Classifier

Scheme = Literal["model", "xavier"]
SCHEMES = ("model", "xavier")


@dataclass(frozen=True)
class ReinitConfig:
    """Reinitialization settings."""

    scheme: Scheme = "model"  # "model": the model's own initialiser, N(0, initializer_range); "xavier": NeuBA's
    cft: CftConfig = field(default_factory=CftConfig)  # the clean fine-tuning that follows the reset


def last_encoder_layer(model: PreTrainedModel) -> nn.Module:
    """The top transformer block of a BERT-like (encoder.layer: BERT, RoBERTa, MPNet) or DistilBERT-like
    (transformer.layer) model. MPNet's relative-position bias (encoder.relative_attention_bias) is no part of it:
    every layer reads that one table, so resetting it would change the lower layers too."""
    base = model.base_model
    for stack in ("encoder", "transformer"):
        layers = getattr(getattr(base, stack, None), "layer", None)
        if isinstance(layers, nn.ModuleList) and len(layers):
            return layers[-1]
    raise ValueError(f"{type(model).__name__}: no encoder.layer or transformer.layer stack to reinitialise")


def reinitialize_last_layer(model: PreTrainedModel, *, seed: int, scheme: Scheme = "model") -> PreTrainedModel:
    """Re-initialise, in place, every Linear and LayerNorm of the last encoder layer; returns the model."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    std = float(getattr(model.config, "initializer_range", 0.02))
    generator = torch.Generator().manual_seed(seed)
    layer = last_encoder_layer(model)
    with torch.no_grad():
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                if scheme == "xavier":
                    nn.init.xavier_uniform_(module.weight, generator=generator)
                else:
                    nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                if module.weight is not None:
                    module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):  # none in BERT's layers; relative-position variants have them
                nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
    return model


def reinitialization(
    inputs: DefenseInputs,
    config: ReinitConfig,
    *,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Classifier:
    """Reset the last encoder layer of a copy of the suspect, then fine-tune it on D_c (clean-dev selection)."""
    model = reinitialize_last_layer(copy.deepcopy(inputs.suspect.model), seed=inputs.seed, scheme=config.scheme)
    reset = Classifier(model=model, tokenizer=inputs.suspect.tokenizer)
    return clean_finetune(
        reset, inputs.clean, inputs.dev, train_config=config.cft.train, seed=inputs.seed,
        on_step=on_step, on_epoch=on_epoch,
    )


DEFENSE = Defense(name="reinit", kind="mitigation", run=reinitialization, config_type=ReinitConfig)
