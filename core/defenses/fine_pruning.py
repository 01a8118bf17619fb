"""Fine-Pruning (Liu et al., 2018) adapted to BERT-like encoders: prune dormant FFN neurons of the
last layer, then fine-tune on D_c with the pruned neurons held at zero.

No NLP paper spells the adaptation out; this follows SPEC: neurons are the last layer's FFN
intermediate units after the activation (the output of `layer[-1].intermediate`), ranked by their
mean activation over the non-pad tokens of D_c, and masked lowest first in steps of `step` of the
width for as long as clean dev accuracy stays within `tolerance` points of the unpruned model's.
Only clean data is ever used to choose.

How the mask is kept: a pruned neuron gets zero rows in `intermediate.dense` (weight and bias) and a
zero column in `output.dense`, so the weights alone prune it (GELU(0) = 0) and a model saved from
them is pruned with no hook. During CFT a forward hook multiplies the intermediate output by the
mask (a non-persistent buffer `prune_mask` on the intermediate module); that makes every gradient
of the zeroed weights exactly zero, so AdamW (zero moments, decoupled decay of a zero) leaves them
zero. The hook stays on the returned model and travels with `copy.deepcopy`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from core.data import TextDataset
from core.defenses.base import Defense, DefenseInputs
from core.defenses.cft import CftConfig, EpochCallback, StepCallback, clean_finetune
from core.defenses.reinit import last_encoder_layer
from core.metrics import Counts, clean_accuracy
from core.models import Classifier
from core.train import batches, predict

MASK_BUFFER = "prune_mask"  # name of the mask buffer on the intermediate module


@dataclass(frozen=True)
class FinePruningConfig:
    """Fine-Pruning settings."""

    step: float = 0.05  # share of the FFN width added to the mask per step (Liu et al. prune gradually)
    tolerance: float = 2.0  # clean dev accuracy points the pruned model may lose against the unpruned one
    max_fraction: float = 1.0  # never prune more than this share of the width
    cft: CftConfig = field(default_factory=CftConfig)  # the fine-tuning that follows, mask held fixed

    def __post_init__(self) -> None:
        if not 0 < self.step <= 1 or not 0 <= self.max_fraction <= 1 or self.tolerance < 0:
            raise ValueError(f"need 0 < step <= 1, 0 <= max_fraction <= 1, tolerance >= 0: {self}")


@dataclass(frozen=True)
class PruningChoice:
    """What the clean-dev search chose."""

    order: tuple[int, ...]  # neuron indices, lowest mean activation on D_c first
    pruned: int  # how many of them (the first ones in `order`) are masked
    unpruned_dev: Counts  # clean dev accuracy of the model before pruning
    pruned_dev: Counts  # clean dev accuracy with the chosen mask, before CFT

    @property
    def mask(self) -> torch.Tensor:
        """1.0 for kept neurons, 0.0 for pruned ones."""
        mask = torch.ones(len(self.order))
        mask[list(self.order[: self.pruned])] = 0.0
        return mask


def ffn_intermediate(model: PreTrainedModel) -> nn.Module:
    """The last encoder layer's FFN up-projection and activation (BERT, RoBERTa, MiniLM, ELECTRA)."""
    layer = last_encoder_layer(model)
    module = getattr(layer, "intermediate", None)
    if not isinstance(getattr(module, "dense", None), nn.Linear):
        raise ValueError(f"{type(model).__name__}: the last layer has no intermediate.dense FFN to prune")
    return module


def mean_activations(
    classifier: Classifier, data: TextDataset, *, batch_size: int, max_length: int
) -> torch.Tensor:
    """Mean post-activation output of each last-layer FFN neuron over the non-pad tokens of `data`."""
    model = classifier.model
    module = ffn_intermediate(model)
    device = next(model.parameters()).device
    total = torch.zeros(module.dense.out_features, dtype=torch.float64)
    tokens = 0
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _module, _args, output: captured.append(output))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches(classifier.tokenizer, data, batch_size=batch_size, max_length=max_length):
                batch = batch.to(device)
                captured.clear()
                model(**batch.inputs)
                valid = batch.attention_mask.bool()
                total += captured[0][valid].double().sum(dim=0).cpu()
                tokens += int(valid.sum())
    finally:
        handle.remove()
        model.train(was_training)
    return (total / max(tokens, 1)).float()


def _apply_prune_mask(module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the intermediate output times the module's mask buffer."""
    return output * getattr(module, MASK_BUFFER).to(output.dtype)


def set_prune_mask(model: PreTrainedModel, mask: torch.Tensor) -> None:
    """Put `mask` (1 keep, 0 prune) on the last FFN as a hooked buffer; the hook is added once."""
    module = ffn_intermediate(model)
    mask = mask.to(device=module.dense.weight.device, dtype=torch.float32)
    if hasattr(module, MASK_BUFFER):
        getattr(module, MASK_BUFFER).copy_(mask)
        return
    module.register_buffer(MASK_BUFFER, mask.clone(), persistent=False)  # kept out of saved weights
    module.register_forward_hook(_apply_prune_mask)


def zero_pruned_weights(model: PreTrainedModel, mask: torch.Tensor) -> None:
    """Zero the pruned neurons' rows of intermediate.dense and columns of the layer's output.dense."""
    layer = last_encoder_layer(model)
    pruned = (mask == 0).to(layer.intermediate.dense.weight.device)
    with torch.no_grad():
        layer.intermediate.dense.weight[pruned] = 0.0
        if layer.intermediate.dense.bias is not None:
            layer.intermediate.dense.bias[pruned] = 0.0
        layer.output.dense.weight[:, pruned] = 0.0


def _dev_counts(classifier: Classifier, dev: TextDataset, config: FinePruningConfig) -> Counts:
    train = config.cft.train
    predictions = predict(
        classifier.model, classifier.tokenizer, dev.texts, batch_size=train.eval_batch_size,
        max_length=train.max_length,
    )
    return clean_accuracy(predictions=predictions, labels=dev.labels)


def choose_pruning(
    classifier: Classifier, clean: TextDataset, dev: TextDataset, config: FinePruningConfig
) -> PruningChoice:
    """Mask the lowest-activation neurons step by step; keep the last step within tolerance on clean dev."""
    train = config.cft.train
    activations = mean_activations(
        classifier, clean, batch_size=train.eval_batch_size, max_length=train.max_length
    )
    width = len(activations)
    order = tuple(int(i) for i in torch.argsort(activations, stable=True))
    unpruned = _dev_counts(classifier, dev, config)
    probe = Classifier(model=copy.deepcopy(classifier.model), tokenizer=classifier.tokenizer)
    limit = round(config.max_fraction * width)
    steps = math.ceil(1 / config.step - 1e-9)
    counts = sorted({min(width, round(i * config.step * width)) for i in range(1, steps + 1)} - {0})
    chosen, chosen_dev = 0, unpruned
    for count in (c for c in counts if c <= limit):
        set_prune_mask(probe.model, PruningChoice(order, count, unpruned, unpruned).mask)
        counts_dev = _dev_counts(probe, dev, config)
        if unpruned.percent - counts_dev.percent > config.tolerance:
            break
        chosen, chosen_dev = count, counts_dev
    return PruningChoice(order=order, pruned=chosen, unpruned_dev=unpruned, pruned_dev=chosen_dev)


def prune(classifier: Classifier, choice: PruningChoice) -> Classifier:
    """A copy of `classifier` with the chosen neurons zeroed and the mask hook attached."""
    model = copy.deepcopy(classifier.model)
    set_prune_mask(model, choice.mask)
    zero_pruned_weights(model, choice.mask)
    return Classifier(model=model, tokenizer=classifier.tokenizer)


def fine_pruning(
    inputs: DefenseInputs,
    config: FinePruningConfig,
    *,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Classifier:
    """Fine-Pruning: prune dormant last-layer FFN neurons (chosen on clean data), then CFT with the mask fixed."""
    choice = choose_pruning(inputs.suspect, inputs.clean, inputs.dev, config)
    return clean_finetune(
        prune(inputs.suspect, choice), inputs.clean, inputs.dev, train_config=config.cft.train, seed=inputs.seed,
        on_step=on_step, on_epoch=on_epoch,
    )


DEFENSE = Defense(name="fine-pruning", kind="mitigation", run=fine_pruning, config_type=FinePruningConfig)
