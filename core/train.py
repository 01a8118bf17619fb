"""One training loop for every method; fine-tuning, LWP, EP and MBTSAD's distillation differ only in data.

A method is a tuple of weighted `LossTerm`s, an `Update` (which parameters move, and what happens
around each optimizer step) and an optional frozen teacher:
- fine-tuning (attack, CFT, TS-FT): `(cross_entropy_term(),)`;
- LWP: `(layerwise_term(),)`;
- EP: `(cross_entropy_term(),)` with `embedding_row_update(model, token_ids=...)`;
- MBTSAD and its ablations: `distillation_terms(alpha=..., beta=...)` with `teacher=M_p`.

Choices worth knowing:
- Progress: `core/` imports no rich (STYLE rule 9). `fit` calls `on_step` after every step and
  `on_epoch` after every epoch; the CLI renders a rich progress bar from them, Ray reports from them.
- Attention maps handed to loss terms are dropout-free: in transformers 5 the eager attention
  returns probabilities after dropout, so when a term reads attentions the student's
  attention-probability dropout is set to 0 for that forward pass (hidden dropout stays on).
- Randomness: shuffling uses its own `torch.Generator` seeded from `TrainConfig.seed`; dropout
  uses the global torch RNG, so `fit` runs inside `torch.random.fork_rng` seeded with the same
  seed, which restores the caller's RNG state afterwards. Same seed, same weights on CPU.
- bf16 autocast is on by default only where the hardware has native bf16 (a CUDA GPU with bf16,
  AVX512-BF16/AMX or ARM bf16 CPUs): measured on an AVX2 CPU it is about 20 times slower than fp32.
- Tokenised batches (dynamic padding, grouped by length for training) and prediction live in
  `core/batching.py`.
- The teacher runs in eval mode without gradients, asked only for the outputs the terms read, as
  `frozen_teacher` prepares it once per `fit` (its Linear weights cast or pre-packed for the precision).
- Checkpoint selection keeps the best epoch's weights in memory: by clean dev accuracy when `dev`
  is given (defences), by a caller's `score` when given (the attacker may score on poisoned dev),
  else the last epoch. With `patience`, training stops once that score has not improved for `patience`
  epochs ("while no convergence", Algorithm 1), `epochs` being the most it trains. A caller's `diagnose`
  (e.g. test CACC and ASR per epoch, for a study) is recorded beside each epoch and never selects anything.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup
from transformers.utils import ModelOutput

from core.batching import Batch, batches, predict
from core.data import TextDataset
from core.losses import (
    attention_transfer_loss,
    classification_loss,
    hidden_state_loss,
    layerwise_classification_loss,
)
from core.metrics import Counts, clean_accuracy

NEEDS = frozenset({"attentions", "hidden_states", "teacher"})  # what a loss term may ask the step for
RESERVED = frozenset({"loss", "grad_norm", "lr"})  # keys of the step's dict that terms cannot take
SCHEDULES = ("linear", "constant")
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every method; the paper's values are noted per field."""

    lr: float  # AdamW peak learning rate: 2e-5 retraining and CFT, 5e-4 distillation, 5e-2 EP
    epochs: int  # passes over the training set
    batch_size: int = 32  # the paper's batch size
    max_length: int = 128  # truncation in tokens; each batch pads only to its longest text
    warmup_ratio: float = 0.1  # share of all steps warming up linearly, then linear decay to 0
    weight_decay: float = 0.01  # AdamW decoupled decay on matrices; biases and LayerNorm are exempt
    max_grad_norm: float | None = 1.0  # clip the trained parameters' gradient norm; None: no clipping
    bf16: bool | None = None  # bf16 autocast; None: on only where the hardware has native bf16
    seed: int = 0  # shuffling order and dropout
    eval_batch_size: int = 128  # batch size of the per-epoch dev evaluation
    group_by_length: bool = True  # length-grouped batches (core/batching.py): far less padding; False: random batches
    # OpenBackdoor's schedule: warm up over this many epochs and decay over warmup_epochs + epochs, of which only
    # `epochs` are trained (2 of 3 + 2: the rate ends at 2/3 of its peak); None: warmup_ratio of the trained steps.
    warmup_epochs: float | None = None
    schedule: str = "linear"  # linear: warm-up then linear decay; constant: lr throughout (OpenBackdoor's EP row)
    optimizer: str = "adamw"  # adamw; sgd: plain gradient steps, no momentum (OpenBackdoor's EP row)
    # Early stopping: stop once the selection score (clean dev accuracy for a defence) has not improved for this
    # many epochs; `epochs` is then the most it trains, and the schedule still spans `epochs`. None: every epoch.
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1 or self.max_length < 2:
            raise ValueError(f"need lr > 0, epochs >= 1, batch_size >= 1, max_length >= 2: {self}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0 or None, got {self.warmup_epochs}")
        if self.schedule not in SCHEDULES or self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"schedule {self.schedule!r} / optimizer {self.optimizer!r}: valid schedules {', '.join(SCHEDULES)},"
                f" optimizers {', '.join(OPTIMIZERS)}"
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must lie in [0, 1], got {self.warmup_ratio}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be positive or None, got {self.max_grad_norm}")

    def use_bf16(self, device: torch.device) -> bool:
        """Whether to autocast to bf16 on `device`: the `bf16` field, or the hardware check when it is None."""
        return bf16_supported(device) if self.bf16 is None else self.bf16


@dataclass(frozen=True)
class StepContext:
    """What a loss term reads: the student and its outputs, the batch, and the teacher's outputs."""

    model: nn.Module
    batch: Batch
    outputs: ModelOutput
    teacher_outputs: ModelOutput | None


@dataclass(frozen=True)
class LossTerm:
    """One weighted loss: the step minimises the sum of weight * fn(context) over its terms."""

    name: str  # key of the term's unweighted value in the step's dict
    weight: float
    fn: Callable[[StepContext], torch.Tensor]
    needs: frozenset[str] = frozenset()  # subset of NEEDS: outputs beyond logits, and a teacher

    def __post_init__(self) -> None:
        if unknown := self.needs - NEEDS:
            raise ValueError(f"{self.name}: unknown needs {sorted(unknown)}; valid: {sorted(NEEDS)}")
        if self.name in RESERVED:
            raise ValueError(f"term name {self.name!r} is reserved ({sorted(RESERVED)})")


def _nothing() -> None:
    """No action around the optimizer step."""


@dataclass(frozen=True)
class Update:
    """Which parameters a run trains, and what happens to them around each optimizer step."""

    parameters: tuple[nn.Parameter, ...]
    before_step: Callable[[], None] = _nothing  # after backward, before clipping
    after_step: Callable[[], None] = _nothing  # after the optimizer step


@dataclass(frozen=True)
class StepReport:
    """What `fit` tells its `on_step` callback after each step."""

    epoch: int
    step: int  # 1-based, counted over all epochs
    total_steps: int
    values: dict[str, float]  # the step's dict: loss, each term, grad_norm, lr


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean step values, clean dev counts, the selection score (None: not scored) and what a caller's
    `diagnose` measured (never read for selection)."""

    epoch: int
    means: dict[str, float]
    dev: Counts | None
    score: float | None
    diagnosis: Mapping[str, float | None] | None = None


@dataclass(frozen=True)
class FitResult:
    """The selected epoch (its weights are in the model) and every epoch's record."""

    best_epoch: int
    history: tuple[EpochRecord, ...]


def all_parameters(model: nn.Module) -> Update:
    """Train every parameter that requires a gradient, with nothing around the step."""
    return Update(parameters=tuple(p for p in model.parameters() if p.requires_grad))


def embedding_row_update(model: PreTrainedModel, *, token_ids: Sequence[int]) -> Update:
    """EP and RAP: train only the input-embedding rows of `token_ids` (a word's forms: byte-level BPE has one
    at the start of a text and one after a space), each rescaled to its norm at call time."""
    weight = model.get_input_embeddings().weight
    original = weight.detach().clone()
    rows = torch.tensor(sorted(set(token_ids)), device=weight.device)
    norms = original[rows].norm(dim=1, keepdim=True)
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    mask[rows] = 1.0

    def mask_gradient() -> None:
        weight.grad.mul_(mask)

    def restore() -> None:
        # Weight decay touches every row of the matrix: put the others back, then fix each row's norm.
        with torch.no_grad():
            trained = weight[rows].clone()
            weight.copy_(original)
            weight[rows] = trained * (norms / trained.norm(dim=1, keepdim=True))

    return Update(parameters=(weight,), before_step=mask_gradient, after_step=restore)


def classification_head(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's own head as a map from a [batch, len, hidden] state to logits, reading [CLS]."""
    classifier = model.classifier
    if not isinstance(classifier, nn.Linear):
        return classifier  # RoBERTa-style heads take the sequence and read [CLS] themselves
    pooler, dropout = model.base_model.pooler, model.dropout  # BERT: pooler, dropout, linear layer
    return lambda states: classifier(dropout(pooler(states)))


def _cross_entropy(ctx: StepContext) -> torch.Tensor:
    return classification_loss(logits=ctx.outputs.logits, labels=ctx.batch.labels)


def _layerwise(ctx: StepContext) -> torch.Tensor:
    return layerwise_classification_loss(
        hidden_states=ctx.outputs.hidden_states, labels=ctx.batch.labels, head=classification_head(ctx.model)
    )


def _attention_transfer(ctx: StepContext, *, axis: str = "map") -> torch.Tensor:
    if not ctx.outputs.attentions or ctx.outputs.attentions[0] is None:
        raise ValueError("the model returned no attention maps; load it with attn_implementation='eager'")
    return attention_transfer_loss(
        teacher_attentions=ctx.teacher_outputs.attentions,
        student_attentions=ctx.outputs.attentions,
        attention_mask=ctx.batch.attention_mask,
        axis=axis,
    )


def _hidden(ctx: StepContext) -> torch.Tensor:
    return hidden_state_loss(
        teacher_hidden_states=ctx.teacher_outputs.hidden_states,
        student_hidden_states=ctx.outputs.hidden_states,
        attention_mask=ctx.batch.attention_mask,
    )


def cross_entropy_term(weight: float = 1.0) -> LossTerm:
    """Plain fine-tuning: cross-entropy with the labels (eq. 7)."""
    return LossTerm(name="ce", weight=weight, fn=_cross_entropy)


def layerwise_term(weight: float = 1.0) -> LossTerm:
    """LWP: cross-entropy of the shared head on every hidden state, summed."""
    return LossTerm(name="layerwise_ce", weight=weight, fn=_layerwise, needs=frozenset({"hidden_states"}))


def distillation_terms(
    *, alpha: float, beta: float, attention: float = 1.0, attention_axis: str = "map"
) -> tuple[LossTerm, ...]:
    """Eq. 1 as terms: attention * L_a + alpha * L_cls + beta * L_h; zero-weight terms are dropped."""
    terms = (
        LossTerm(
            name="attention",
            weight=attention,
            fn=functools.partial(_attention_transfer, axis=attention_axis),
            needs=frozenset({"attentions", "teacher"}),
        ),
        LossTerm(name="ce", weight=alpha, fn=_cross_entropy),
        LossTerm(name="hidden", weight=beta, fn=_hidden, needs=frozenset({"hidden_states", "teacher"})),
    )
    kept = tuple(term for term in terms if term.weight != 0)
    if not kept:
        raise ValueError("all distillation weights are zero")
    return kept


def bf16_supported(device: torch.device) -> bool:
    """Whether `device` has native bf16: a CUDA GPU with bf16, or a CPU with AVX512-BF16, AMX or ARM bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()  # torch >= 2.10; older: assume none
    return device.type == "cpu" and any(
        capabilities.get(name) for name in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
    )


def frozen_teacher(teacher: nn.Module, *, bf16: bool) -> nn.Module:
    """The teacher as a step runs it, its Linear weights prepared once instead of at every forward pass.

    Under bf16 autocast: a copy whose Linear layers are already bf16, which gives autocast's very numbers
    without its per-step weight casts. In fp32 on a CPU with oneDNN: a copy whose Linear layers hold
    oneDNN's pre-packed weights (`torch.utils.mkldnn`, inference only), equal to fp32 rounding. Else the
    teacher itself.
    """
    on_cpu = next(teacher.parameters()).device.type == "cpu"
    if not bf16 and not (on_cpu and torch.backends.mkldnn.is_available()):
        return teacher
    copied = copy.deepcopy(teacher).requires_grad_(False).eval()
    if not bf16:
        from torch.utils.mkldnn import to_mkldnn  # here: importing it warns that torch.jit.script_method is deprecated

        return to_mkldnn(copied)
    for module in copied.modules():
        if isinstance(module, nn.Linear):
            module.to(torch.bfloat16)
    return copied


@contextmanager
def _attention_dropout_off(model: nn.Module) -> Iterator[None]:
    """Attention-probability dropout set to 0 inside the block (self-attention modules with a query)."""
    dropouts = [
        module.dropout
        for module in model.modules()
        if isinstance(getattr(module, "dropout", None), nn.Dropout)
        and any(hasattr(module, name) for name in ("query", "q_lin", "q"))  # BERT, DistilBERT, MPNet
    ]
    if not dropouts:
        raise ValueError(f"found no attention dropout in {type(model).__name__} to switch off")
    saved = [dropout.p for dropout in dropouts]
    for dropout in dropouts:
        dropout.p = 0.0
    try:
        yield
    finally:
        for dropout, p in zip(dropouts, saved, strict=True):
            dropout.p = p


def compute_losses(
    model: nn.Module, batch: Batch, terms: Sequence[LossTerm], *, teacher: nn.Module | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted total and each unweighted term on one batch; the teacher runs in eval mode without grad."""
    names = [term.name for term in terms]
    if not terms or len(set(names)) != len(names):
        raise ValueError(f"need at least one loss term, with distinct names; got {names}")
    needs = frozenset().union(*(term.needs for term in terms))
    if "teacher" in needs and teacher is None:
        raise ValueError(f"terms {names} read a teacher's outputs, but no teacher was given")
    flags = {"output_attentions": "attentions" in needs, "output_hidden_states": "hidden_states" in needs}
    teacher_outputs = None
    if "teacher" in needs:  # a teacher no term reads (CD, L_cls only) is not run
        teacher.eval()
        with torch.no_grad():
            teacher_outputs = teacher(**batch.inputs, **flags)
    with _attention_dropout_off(model) if flags["output_attentions"] else nullcontext():
        outputs = model(**batch.inputs, **flags)
    context = StepContext(model=model, batch=batch, outputs=outputs, teacher_outputs=teacher_outputs)
    values = {term.name: term.fn(context) for term in terms}
    total = torch.stack([term.weight * values[term.name] for term in terms]).sum()
    return total, values


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    terms: Sequence[LossTerm],
    *,
    teacher: nn.Module | None = None,
    update: Update | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float | None = 1.0,
    bf16: bool = False,
) -> dict[str, float]:
    """One optimizer step on the weighted terms; returns loss, each unweighted term, grad_norm and lr."""
    update = update or all_parameters(model)
    device = batch.labels.device
    model.train()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        total, values = compute_losses(model, batch, terms, teacher=teacher)
    model.zero_grad(set_to_none=True)
    total.backward()
    update.before_step()
    grad_norm = torch.nn.utils.clip_grad_norm_(update.parameters, math.inf if max_grad_norm is None else max_grad_norm)
    optimizer.step()
    update.after_step()
    lr = optimizer.param_groups[0]["lr"]
    if scheduler is not None:
        scheduler.step()
    return {
        "loss": total.item(),
        **{name: value.item() for name, value in values.items()},
        "grad_norm": grad_norm.item(),
        "lr": lr,
    }


def _optimizer(parameters: Sequence[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only, as usual for transformers; fused: one kernel for all tensors.
    Or plain SGD (no momentum, no decay), as OpenBackdoor's EP row update."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(list(parameters), lr=config.lr)
    groups = [
        {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([group for group in groups if group["params"]], lr=config.lr, fused=True)


def _scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up and decay over the trained steps, OpenBackdoor's over warmup_epochs + epochs, or constant."""
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    total_steps = config.epochs * steps_per_epoch
    if config.warmup_epochs is None:
        return get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    warmup = round(config.warmup_epochs * steps_per_epoch)
    return get_linear_schedule_with_warmup(optimizer, warmup, warmup + total_steps)


@contextmanager
def _only_trainable(model: nn.Module, parameters: Sequence[nn.Parameter]) -> Iterator[None]:
    """Gradients for `parameters` only inside the block; the model's requires_grad flags come back after."""
    keep = {id(p) for p in parameters}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(id(p) in keep)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """The global torch RNG (dropout) seeded inside the block and restored to the caller's after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _dev_accuracy(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, dev: TextDataset, config: TrainConfig, bf16: bool
) -> Counts:
    """Clean accuracy on the dev set, as counts."""
    predictions = predict(
        model, tokenizer, dev.texts, batch_size=config.eval_batch_size, max_length=config.max_length, bf16=bf16
    )
    return clean_accuracy(predictions=predictions, labels=dev.labels)


def fit(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    train: TextDataset,
    *,
    config: TrainConfig,
    terms: Sequence[LossTerm],
    teacher: nn.Module | None = None,
    update: Update | None = None,
    dev: TextDataset | None = None,
    score: Callable[[nn.Module], float] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    diagnose: Callable[[nn.Module], Mapping[str, float | None]] | None = None,
) -> FitResult:
    """Train `model` in place; it ends in eval mode holding the selected epoch's weights (see the module docstring)."""
    if len(train) == 0 or (dev is not None and len(dev) == 0):
        raise ValueError(f"empty data: train {len(train)} samples, dev {None if dev is None else len(dev)}")
    device = next(model.parameters()).device
    bf16 = config.use_bf16(device)
    update = update or all_parameters(model)
    teacher = None if teacher is None else frozen_teacher(teacher, bf16=bf16)
    optimizer = _optimizer(update.parameters, config)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    scheduler = _scheduler(optimizer, config, steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    history: list[EpochRecord] = []
    best_epoch, best_score, best_state = config.epochs, -math.inf, None
    with _seeded(device, config.seed), _only_trainable(model, update.parameters):
        for epoch in range(1, config.epochs + 1):
            sums: dict[str, float] = {}
            for i, batch in enumerate(
                batches(
                    tokenizer,
                    train,
                    batch_size=config.batch_size,
                    max_length=config.max_length,
                    generator=shuffle,
                    group_by_length=config.group_by_length,
                ),
                start=(epoch - 1) * steps_per_epoch + 1,
            ):
                values = train_step(
                    model,
                    optimizer,
                    batch.to(device),
                    terms,
                    teacher=teacher,
                    update=update,
                    scheduler=scheduler,
                    max_grad_norm=config.max_grad_norm,
                    bf16=bf16,
                )
                sums = {key: sums.get(key, 0.0) + value for key, value in values.items()}
                if on_step is not None:
                    on_step(StepReport(epoch=epoch, step=i, total_steps=total_steps, values=values))
            dev_counts = None if dev is None else _dev_accuracy(model, tokenizer, dev, config, bf16)
            if score is not None:
                value = score(model)
            else:
                value = None if dev_counts is None else dev_counts.percent
            record = EpochRecord(
                epoch=epoch,
                means={k: v / steps_per_epoch for k, v in sums.items()},
                dev=dev_counts,
                score=value,
                diagnosis=None if diagnose is None else diagnose(model),
            )
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if value is not None and value > best_score:
                best_epoch, best_score = epoch, value
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if value is not None and config.patience is not None and epoch - best_epoch >= config.patience:
                break  # converged: the score has not improved for `patience` epochs
    if best_state is not None and best_epoch != history[-1].epoch:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(best_epoch=best_epoch, history=tuple(history))
