"""Fine-Purifying (Zhang et al., ACL 2023 Findings): reset the dimensions that drifted far where clean data
barely curves the loss, then CFT.

Per scalar of every pre-trained tensor, drift d = w_ft - w_pre and clean curvature H = the diagonal
empirical Fisher at w_ft on D_c (mean squared per-example gradients of the cross-entropy). The
indicator d^2 / (H + eps) ranks the dimensions; the top share is reset to w_pre. The indicator and its
constants are reconstructed from the paper's abstract and secondary descriptions (its code is not
public here), hence named options.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from core.batching import token_lengths
from core.data import TextDataset
from core.defenses.base import Defense, DefenseInputs
from core.defenses.cft import CftConfig, EpochCallback, StepCallback
from core.defenses.fine_mixing import RatioChoice, choose_ratio, paired_parameters, require_pretrained
from core.models import Classifier

Scope = Literal["global", "tensor"]
SCOPES = ("global", "tensor")
RESET_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # tried from the largest: Fine-Mixing's smallest rho


@dataclass(frozen=True)
class FinePurifyingConfig:
    """Fine-Purifying settings; SPEC defaults where it has them, reconstructed constants otherwise."""

    reset_fraction: float | None = None  # share of scalars reset to w_pre; None: the clean-dev rule picks it
    reset_grid: tuple[float, ...] = RESET_GRID  # candidates, tried from the largest; the first within tolerance wins
    tolerance: float = 2.0  # clean dev accuracy points the purified-then-CFT model may lose against the suspect
    fisher_samples: int = 256  # D_c examples (a seeded random draw) whose per-example gradients estimate H
    fisher_batch_size: int = 8  # examples per vmapped gradient batch; memory grows as this times the model size
    eps: float = 1e-8  # added to H: dimensions clean data does not curve at all rank first instead of dividing by 0
    scope: Scope = "global"  # rank all scalars of the encoder together, or each tensor on its own
    cft: CftConfig = field(default_factory=CftConfig)  # the clean fine-tuning after the reset

    def __post_init__(self) -> None:
        fractions = (*self.reset_grid, *(() if self.reset_fraction is None else (self.reset_fraction,)))
        if not fractions or not all(0.0 <= f <= 1.0 for f in fractions) or self.tolerance < 0:
            raise ValueError(f"Fine-Purifying needs fractions in [0, 1] and tolerance >= 0: {self}")
        if self.fisher_samples < 1 or self.fisher_batch_size < 1 or self.eps <= 0 or self.scope not in SCOPES:
            raise ValueError(
                f"Fine-Purifying needs fisher_samples >= 1, fisher_batch_size >= 1, eps > 0, scope in {SCOPES}: {self}"
            )


def diagonal_fisher(
    classifier: Classifier, data: TextDataset, *, names: list[str], max_length: int, batch_size: int = 8
) -> dict[str, torch.Tensor]:
    """Mean squared per-example cross-entropy gradient of the named base-model parameters (eval mode, no dropout).

    Per-example gradients come `batch_size` at a time from `torch.func.vmap` over `torch.func.grad`; the
    texts are sorted by length so a batch pads little, and padding is masked (the model's own 4D additive
    form, built outside vmap, which cannot trace the mask checks), so each gradient is the example's own.
    The word-embedding table's gradient is nonzero only in an example's own rows: it is taken with respect
    to the looked-up vectors and summed into those rows, instead of a dense table per example.
    """
    if not len(data):
        raise ValueError("Fine-Purifying: no clean examples to estimate the Fisher information on")
    model = copy.deepcopy(classifier.model).eval()
    full_name = {id(p): name for name, p in model.named_parameters()}
    base = dict(model.base_model.named_parameters())
    table = model.get_input_embeddings().weight
    keys = [full_name[id(base[name])] for name in names]  # functional_call wants names from the top module
    params = {key: base[name].detach() for key, name in zip(keys, names, strict=True) if base[name] is not table}
    totals = {key: torch.zeros_like(base[name], dtype=torch.float32) for key, name in zip(keys, names, strict=True)}
    table_total = totals.get(full_name[id(table)])

    def loss(
        chosen: dict[str, torch.Tensor], embeds: torch.Tensor, inputs: dict[str, torch.Tensor], label: torch.Tensor
    ) -> torch.Tensor:
        one = {k: v.unsqueeze(0) for k, v in inputs.items()}  # vmap strips the batch axis the model expects
        logits = functional_call(model, chosen, args=(), kwargs={"inputs_embeds": embeds.unsqueeze(0), **one}).logits
        return F.cross_entropy(logits.float(), label.unsqueeze(0))

    per_example = vmap(grad(loss, argnums=(0, 1)), in_dims=(None, 0, 0, 0))
    lengths = token_lengths(classifier.tokenizer, data.texts, max_length=max_length)
    order = sorted(range(len(data)), key=lengths.__getitem__)
    with torch.no_grad():  # the chosen parameters get their gradients from torch.func; nothing else records a graph
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encoded = classifier.tokenizer(
                [data.texts[i] for i in rows],
                padding="longest",
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(table.device)
            input_ids = encoded.pop("input_ids")
            encoded["attention_mask"] = _additive_mask(encoded["attention_mask"])
            labels = torch.tensor([data.labels[i] for i in rows], device=table.device)
            grads, embed_grads = per_example(params, F.embedding(input_ids, table), dict(encoded), labels)
            for key, value in grads.items():
                totals[key].add_(value.float().pow(2).sum(dim=0))
            if table_total is not None:
                for ids, row_grads in zip(input_ids, embed_grads, strict=True):
                    used, position = torch.unique(ids, return_inverse=True)  # a repeated token sums into its row
                    summed = torch.zeros(len(used), table.shape[1], device=table.device).index_add_(
                        0, position, row_grads.float()
                    )
                    table_total.index_add_(0, used, summed.pow(2))
    return {name: totals[key] / len(data) for name, key in zip(names, keys, strict=True)}


def _additive_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, len] 0/1 -> [batch, 1, 1, len] with 0 on tokens and the float minimum on padding."""
    return (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def purifying_indicator(*, drift: torch.Tensor, fisher: torch.Tensor, eps: float) -> torch.Tensor:
    """d^2 / (H + eps): large where a weight moved far and clean data barely curves the loss."""
    return drift.float().pow(2) / (fisher.float() + eps)


def reset_masks(indicators: dict[str, torch.Tensor], *, fraction: float, scope: Scope) -> dict[str, torch.Tensor]:
    """True on the top `fraction` of scalars by indicator: round(fraction n) of them, globally or per tensor."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"Fine-Purifying: the reset fraction must lie in [0, 1], got {fraction}")
    if scope == "tensor":
        return {name: _top_share(values.flatten(), fraction).view_as(values) for name, values in indicators.items()}
    if scope != "global":
        raise ValueError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    flat = _top_share(torch.cat([v.flatten() for v in indicators.values()]), fraction)
    sizes = [v.numel() for v in indicators.values()]
    return {
        name: part.view_as(values) for (name, values), part in zip(indicators.items(), flat.split(sizes), strict=True)
    }


def _top_share(values: torch.Tensor, fraction: float) -> torch.Tensor:
    chosen = torch.zeros_like(values, dtype=torch.bool)
    chosen[torch.topk(values, round(fraction * values.numel())).indices] = True
    return chosen


def purify_weights(*, suspect: Classifier, pretrained: Classifier, masks: dict[str, torch.Tensor]) -> Classifier:
    """A copy of the suspect whose masked scalars hold their pre-trained values."""
    purified = Classifier(model=copy.deepcopy(suspect.model), tokenizer=suspect.tokenizer)
    pairs = paired_parameters(purified.model, pretrained.model, method="Fine-Purifying")
    with torch.no_grad():
        for name, mask in masks.items():
            weight, w_pre = pairs[name]
            weight.copy_(torch.where(mask.to(weight.device), w_pre.to(weight.device, weight.dtype), weight))
    return purified


def purifying_indicators(
    inputs: DefenseInputs, config: FinePurifyingConfig, pretrained: Classifier
) -> dict[str, torch.Tensor]:
    """The indicator of every pre-trained scalar, with H estimated on a seeded draw of D_c."""
    pairs = paired_parameters(inputs.suspect.model, pretrained.model, method="Fine-Purifying")
    rng = np.random.default_rng(inputs.seed)
    sample = inputs.clean
    if len(sample) > config.fisher_samples:
        sample = sample.subset(np.sort(rng.choice(len(sample), size=config.fisher_samples, replace=False)))
    fisher = diagonal_fisher(
        inputs.suspect,
        sample,
        names=list(pairs),
        max_length=config.cft.train.max_length,
        batch_size=config.fisher_batch_size,
    )
    return {
        name: purifying_indicator(drift=weight.detach() - w_pre.to(weight.device), fisher=fisher[name], eps=config.eps)
        for name, (weight, w_pre) in pairs.items()
    }


def fine_purifying_search(
    inputs: DefenseInputs,
    config: FinePurifyingConfig,
    *,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> RatioChoice:
    """Reset the top indicator share for each candidate fraction, CFT, and keep the clean-dev choice."""
    pretrained = require_pretrained(inputs, method="Fine-Purifying")
    indicators = purifying_indicators(inputs, config, pretrained)

    def build(fraction: float) -> Classifier:
        masks = reset_masks(indicators, fraction=fraction, scope=config.scope)
        return purify_weights(suspect=inputs.suspect, pretrained=pretrained, masks=masks)

    if config.reset_fraction is not None:
        candidates: tuple[float, ...] = (config.reset_fraction,)
    else:
        candidates = tuple(sorted(config.reset_grid, reverse=True))
    return choose_ratio(
        candidates=candidates,
        build=build,
        inputs=inputs,
        tolerance=config.tolerance,
        cft=config.cft,
        on_step=on_step,
        on_epoch=on_epoch,
    )


def fine_purifying(
    inputs: DefenseInputs,
    config: FinePurifyingConfig,
    *,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Classifier:
    """Fine-Purifying: the suspect with its top-indicator dimensions reset to w_pre, then fine-tuned on D_c."""
    return fine_purifying_search(inputs, config, on_step=on_step, on_epoch=on_epoch).classifier


DEFENSE = Defense(
    name="fine-purifying", kind="mitigation", run=fine_purifying, config_type=FinePurifyingConfig, needs_pretrained=True
)
