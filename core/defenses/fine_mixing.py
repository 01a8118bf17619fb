"""Fine-Mixing (Zhang et al., EMNLP 2022): mix the suspect's weights with the pre-trained ones, then CFT.

Every tensor the pre-trained encoder has (embeddings, encoder, pooler) becomes
w = w_pre + m * (w_ft - w_pre), with m a 0/1 mask per scalar keeping a share rho (the reserve ratio)
at the backdoored value; the classifier head, which has no pre-trained counterpart, stays. Tensors
are matched by name between the two models' base models (`model.base_model`, e.g. `bert.`), so the
pre-trained model's untrained head is never read.

rho is the smallest candidate whose model after CFT keeps clean dev accuracy within a tolerance of
the undefended suspect's, or a fixed value. `choose_ratio` implements that rule for Fine-Purifying too.

The optional Embedding Purification (E-PUR) also resets the vocabulary rows that moved far for how
rarely they occur in D_c. Its constants are reconstructed from the paper's abstract and secondary
descriptions (the code is not public here), hence named options. With rho = 1, E-PUR runs alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.batching import predict
from core.data import TextDataset
from core.defenses.base import Defense, DefenseInputs
from core.defenses.cft import CftConfig, EpochCallback, StepCallback, clean_finetune
from core.metrics import Counts, clean_accuracy
from core.models import Classifier
from core.train import TrainConfig, bf16_supported

MixMode = Literal["random", "largest"]
MIX_MODES = ("random", "largest")
RHO_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # SPEC: rho in {0.1, ..., 0.9}


@dataclass(frozen=True)
class FineMixingConfig:
    """Fine-Mixing settings; SPEC defaults."""

    rho: float | None = None  # reserve ratio kept at the backdoored value; None: the clean-dev rule picks it
    rho_grid: tuple[float, ...] = RHO_GRID  # candidates, tried from the smallest; the first within tolerance wins
    tolerance: float = 2.0  # clean dev accuracy points the mixed-then-CFT model may lose against the suspect
    mode: MixMode = "random"  # "random": Bernoulli(rho) per scalar; "largest": per tensor, the largest |drift|
    epur: bool = False  # also reset the E-PUR rows of the word embeddings to pre-trained
    epur_rows: int = 200  # E-PUR: N, the vocabulary rows reset
    epur_min_count: float = 20.0  # E-PUR: c in log(max(f, c)), so rare and unseen words share one divisor
    cft: CftConfig = field(default_factory=CftConfig)  # the clean fine-tuning after mixing

    def __post_init__(self) -> None:
        ratios = (*self.rho_grid, *(() if self.rho is None else (self.rho,)))
        if not ratios or not all(0.0 <= r <= 1.0 for r in ratios) or self.tolerance < 0:
            raise ValueError(f"Fine-Mixing needs ratios in [0, 1] and tolerance >= 0: {self}")
        if self.mode not in MIX_MODES or self.epur_rows < 0 or self.epur_min_count <= 1.0:
            raise ValueError(f"Fine-Mixing needs mode in {MIX_MODES}, epur_rows >= 0, epur_min_count > 1: {self}")


@dataclass(frozen=True)
class RatioChoice:
    """A ratio search's outcome: the kept model, its ratio and every tried ratio's clean dev accuracy."""

    classifier: Classifier  # the model after CFT at the chosen ratio
    ratio: float  # rho for Fine-Mixing, the reset share for Fine-Purifying
    suspect_dev: Counts  # clean dev accuracy of the undefended suspect
    tried: tuple[tuple[float, Counts], ...]  # (ratio, clean dev accuracy after CFT), in trial order


def require_pretrained(inputs: DefenseInputs, *, method: str) -> Classifier:
    """The pre-trained weights, or a ValueError saying that `method` needs them."""
    if inputs.pretrained is None:
        raise ValueError(
            f"{method} needs the pre-trained weights w_pre (DefenseInputs.pretrained is None); pass the "
            "clean pre-trained checkpoint the suspect was fine-tuned from"
        )
    return inputs.pretrained


def paired_parameters(
    model: PreTrainedModel, pretrained: PreTrainedModel, *, method: str
) -> dict[str, tuple[torch.nn.Parameter, torch.Tensor]]:
    """Each pre-trained base-model tensor's name -> (the model's parameter, the pre-trained value)."""
    ours = dict(model.base_model.named_parameters())
    theirs = dict(pretrained.base_model.named_parameters())
    missing = [name for name in theirs if name not in ours]
    if missing:
        raise ValueError(
            f"{method}: the suspect lacks {len(missing)} pre-trained tensor(s), e.g. {missing[:3]}; "
            "is it fine-tuned from this pre-trained model?"
        )
    mismatched = [(n, tuple(ours[n].shape), tuple(t.shape)) for n, t in theirs.items() if ours[n].shape != t.shape]
    if mismatched:
        name, got, want = mismatched[0]
        raise ValueError(
            f"{method}: {len(mismatched)} pre-trained tensor(s) differ in shape from the suspect's, e.g. "
            f"{name}: suspect {got} vs pre-trained {want}"
        )
    return {name: (ours[name], theirs[name].detach()) for name in theirs}


def _copy(classifier: Classifier) -> Classifier:
    return Classifier(model=copy.deepcopy(classifier.model), tokenizer=classifier.tokenizer)


def keep_mask(drift: torch.Tensor, *, rho: float, mode: MixMode, generator: torch.Generator) -> torch.Tensor:
    """True where a scalar keeps its backdoored value: a random rho share, or the rho share of largest |drift|."""
    if mode == "random":
        return torch.rand(drift.shape, generator=generator).to(drift.device) < rho
    if mode == "largest":
        flat = drift.abs().flatten()
        kept = torch.zeros_like(flat, dtype=torch.bool)
        kept[torch.topk(flat, round(rho * flat.numel())).indices] = True
        return kept.view_as(drift)
    raise ValueError(f"unknown mix mode {mode!r}; valid: {', '.join(MIX_MODES)}")


def mix_weights(
    *, suspect: Classifier, pretrained: Classifier, rho: float, generator: torch.Generator, mode: MixMode = "random"
) -> Classifier:
    """A copy of the suspect with w = w_pre + m (w_ft - w_pre) on every pre-trained tensor; the head stays."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"Fine-Mixing: rho must lie in [0, 1], got {rho}")
    mixed = _copy(suspect)
    with torch.no_grad():
        for weight, w_pre in paired_parameters(mixed.model, pretrained.model, method="Fine-Mixing").values():
            w_pre = w_pre.to(weight.device, weight.dtype)
            kept = keep_mask(weight - w_pre, rho=rho, mode=mode, generator=generator)
            weight.copy_(torch.where(kept, weight, w_pre))
    return mixed


def token_counts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, size: int) -> torch.Tensor:
    """How often each of `size` vocabulary ids occurs in `texts` (special tokens not added)."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    flat = torch.tensor([i for row in ids for i in row], dtype=torch.long)
    return torch.bincount(flat, minlength=size)[:size].float()


def epur_scores(
    *, suspect_rows: torch.Tensor, pretrained_rows: torch.Tensor, counts: torch.Tensor, min_count: float
) -> torch.Tensor:
    """E-PUR's score per vocabulary row: ||e_ft - e_pre|| / log(max(f, c))."""
    if min_count <= 1.0:
        raise ValueError(f"E-PUR: min_count c must exceed 1 so that log(max(f, c)) > 0, got {min_count}")
    drift = torch.linalg.vector_norm(suspect_rows.float() - pretrained_rows.float(), dim=1)
    return drift / torch.log(counts.to(drift.device).clamp(min=min_count))


def epur_rows(
    *, suspect: Classifier, pretrained: Classifier, texts: Sequence[str], rows: int, min_count: float
) -> torch.Tensor:
    """The ids of the `rows` vocabulary rows with the highest E-PUR score, highest first."""
    ours = suspect.model.get_input_embeddings().weight.detach()
    theirs = pretrained.model.get_input_embeddings().weight.detach()
    if ours.shape != theirs.shape:
        raise ValueError(f"E-PUR: word embeddings differ in shape: {tuple(ours.shape)} vs {tuple(theirs.shape)}")
    counts = token_counts(suspect.tokenizer, texts, size=ours.shape[0])
    scores = epur_scores(suspect_rows=ours, pretrained_rows=theirs, counts=counts, min_count=min_count)
    return torch.topk(scores, min(rows, scores.numel())).indices


def _reset_rows_in_place(model: PreTrainedModel, pretrained: Classifier, rows: torch.Tensor) -> None:
    weight = model.get_input_embeddings().weight
    source = pretrained.model.get_input_embeddings().weight.detach()
    with torch.no_grad():
        weight[rows] = source[rows].to(weight.device, weight.dtype)


def reset_rows(classifier: Classifier, pretrained: Classifier, rows: torch.Tensor) -> Classifier:
    """A copy of `classifier` whose word-embedding `rows` hold the pre-trained values."""
    reset = _copy(classifier)
    _reset_rows_in_place(reset.model, pretrained, rows)
    return reset


def dev_accuracy(classifier: Classifier, dev: TextDataset, *, config: TrainConfig) -> Counts:
    """Clean dev accuracy as counts, predicted as the training loop's own dev evaluation does."""
    device = next(classifier.model.parameters()).device
    predictions = predict(
        classifier.model,
        classifier.tokenizer,
        dev.texts,
        batch_size=config.eval_batch_size,
        max_length=config.max_length,
        bf16=bf16_supported(device) if config.bf16 is None else config.bf16,
    )
    return clean_accuracy(predictions=predictions, labels=dev.labels)


def choose_ratio(
    *,
    candidates: Sequence[float],
    build: Callable[[float], Classifier],
    inputs: DefenseInputs,
    tolerance: float,
    cft: CftConfig,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> RatioChoice:
    """The first candidate whose CFT-ed model stays within `tolerance` dev points of the suspect, else the best."""
    if not candidates:
        raise ValueError("no candidate ratios to choose from")
    suspect_dev = dev_accuracy(inputs.suspect, inputs.dev, config=cft.train)
    tried: list[tuple[float, Counts]] = []
    best: tuple[float, float, Classifier] | None = None  # (dev percent, ratio, model): the fallback
    for ratio in candidates:
        tuned = clean_finetune(
            build(ratio),
            inputs.clean,
            inputs.dev,
            train_config=cft.train,
            seed=inputs.seed,
            on_step=on_step,
            on_epoch=on_epoch,
        )
        counts = dev_accuracy(tuned, inputs.dev, config=cft.train)
        tried.append((ratio, counts))
        if suspect_dev.percent - counts.percent <= tolerance:
            return RatioChoice(tuned, ratio, suspect_dev, tuple(tried))
        if best is None or counts.percent > best[0]:
            best = (counts.percent, ratio, tuned)
    assert best is not None
    return RatioChoice(best[2], best[1], suspect_dev, tuple(tried))


def fine_mixing_search(
    inputs: DefenseInputs,
    config: FineMixingConfig,
    *,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> RatioChoice:
    """Mix (and optionally E-PUR) for each candidate rho, CFT, and keep the clean-dev choice."""
    pretrained = require_pretrained(inputs, method="Fine-Mixing")
    paired_parameters(inputs.suspect.model, pretrained.model, method="Fine-Mixing")  # fail before any training
    purified = None
    if config.epur:
        purified = epur_rows(
            suspect=inputs.suspect,
            pretrained=pretrained,
            texts=inputs.clean.texts,
            rows=config.epur_rows,
            min_count=config.epur_min_count,
        )

    def build(rho: float) -> Classifier:
        generator = torch.Generator().manual_seed(inputs.seed)  # a rho's mask does not depend on what ran before
        mixed = mix_weights(
            suspect=inputs.suspect, pretrained=pretrained, rho=rho, generator=generator, mode=config.mode
        )
        if purified is not None:
            _reset_rows_in_place(mixed.model, pretrained, purified)  # `mixed` is already a copy
        return mixed

    candidates = (config.rho,) if config.rho is not None else tuple(sorted(config.rho_grid))
    return choose_ratio(
        candidates=candidates,
        build=build,
        inputs=inputs,
        tolerance=config.tolerance,
        cft=config.cft,
        on_step=on_step,
        on_epoch=on_epoch,
    )


def fine_mixing(
    inputs: DefenseInputs,
    config: FineMixingConfig,
    *,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Classifier:
    """Fine-Mixing: the suspect mixed with w_pre at the chosen rho, then fine-tuned on D_c."""
    return fine_mixing_search(inputs, config, on_step=on_step, on_epoch=on_epoch).classifier


DEFENSE = Defense(
    name="fine-mixing", kind="mitigation", run=fine_mixing, config_type=FineMixingConfig, needs_pretrained=True
)
