"""The paper's losses (eq. 1-7) and LWP's layer-wise loss, as pure functions of tensors.

Every function takes keyword arguments only and computes in float32, so the same code serves
fp32 and bf16-autocast training. Padding is masked out everywhere, so a batch padded to a longer
length gives the same losses as the unpadded one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

NORM_EPS = 1e-12  # floor under a map's norm; only an all-zero map (no valid token) ever reaches it


def attention_enhancement(*, attention: torch.Tensor) -> torch.Tensor:
    """Eq. 3: sum over heads of squared attention probabilities, [batch, heads, l, l] -> [batch, l, l]."""
    return attention.float().pow(2).sum(dim=1)


# What eq. 4 normalises: the whole l x l map (the paper, SPEC), each query's row, each key's column, or the
# column totals (one value per key token, like NAD's spatial maps). AE's axes are [query, key].
ATTENTION_AXES = ("map", "row", "column", "received")


def attention_transfer_loss(
    *,
    teacher_attentions: Sequence[torch.Tensor],
    student_attentions: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    axis: str = "map",
) -> torch.Tensor:
    """Eq. 2 and 4: per layer, the batch mean of ||AE_t/||AE_t|| - AE_s/||AE_s|| ||_2; summed over layers.

    `axis` "map" is the paper's eq. 4 on the flattened l x l map. The alternatives serve the diagnosis in
    docs/real-run.md: "row" applies eq. 4 to each valid query's row (the attention a token pays) and averages
    over those rows; "column" does the same for each key's column (the attention a token receives), which is
    what `F.normalize`'s default dim gives on [batch, l, l] maps; "received" first sums each column.
    """
    if axis not in ATTENTION_AXES:
        raise ValueError(f"unknown attention axis {axis!r}; valid: {', '.join(ATTENTION_AXES)}")
    if len(teacher_attentions) != len(student_attentions):
        raise ValueError(f"{len(teacher_attentions)} teacher layers but {len(student_attentions)} student layers")
    valid = attention_mask.float()
    pair_mask = valid[:, :, None] * valid[:, None, :]  # padded rows and columns out
    total = torch.zeros((), device=attention_mask.device)
    for teacher, student in zip(teacher_attentions, student_attentions, strict=True):
        maps_t = attention_enhancement(attention=teacher) * pair_mask
        maps_s = attention_enhancement(attention=student) * pair_mask
        total = total + _normalised_distance(maps_t, maps_s, valid, axis).mean()
    return total


def _normalised_distance(maps_t: torch.Tensor, maps_s: torch.Tensor, valid: torch.Tensor, axis: str) -> torch.Tensor:
    """Eq. 4's distance between [batch, l, l] maps along `axis`, one value per example."""
    if axis in ("row", "column"):
        dim = 2 if axis == "row" else 1  # normalise over keys within a row, or over queries within a column
        diff = F.normalize(maps_t, dim=dim, eps=NORM_EPS) - F.normalize(maps_s, dim=dim, eps=NORM_EPS)
        per_vector = torch.linalg.vector_norm(diff, dim=dim) * valid
        return per_vector.sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)
    if axis == "received":
        maps_t, maps_s = maps_t.sum(dim=1), maps_s.sum(dim=1)
    else:
        maps_t, maps_s = maps_t.flatten(1), maps_s.flatten(1)
    diff = F.normalize(maps_t, dim=1, eps=NORM_EPS) - F.normalize(maps_s, dim=1, eps=NORM_EPS)
    return torch.linalg.vector_norm(diff, dim=1)


def hidden_state_loss(
    *,
    teacher_hidden_states: Sequence[torch.Tensor],
    student_hidden_states: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Eq. 5-6: sum over the embedding output and every layer of the MSE over non-pad tokens."""
    if len(teacher_hidden_states) != len(student_hidden_states):
        raise ValueError(
            f"{len(teacher_hidden_states)} teacher hidden states but {len(student_hidden_states)} student ones"
        )
    valid = attention_mask.float()[:, :, None]
    total = torch.zeros((), device=attention_mask.device)
    for teacher, student in zip(teacher_hidden_states, student_hidden_states, strict=True):
        squared = (teacher.float() - student.float()).pow(2) * valid
        total = total + squared.sum() / (valid.sum() * teacher.shape[-1])
    return total


def classification_loss(*, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 7: cross-entropy of the logits against the ground-truth labels."""
    return F.cross_entropy(logits.float(), labels)


def distillation_loss(
    *,
    attention: torch.Tensor | None,
    classification: torch.Tensor | None,
    hidden: torch.Tensor | None,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """Eq. 1: L_a + alpha L_cls + beta L_h; a term given as None is left out (the ablations)."""
    weighted = [(1.0, attention), (alpha, classification), (beta, hidden)]
    present = [weight * term for weight, term in weighted if term is not None]
    if not present:
        raise ValueError("distillation_loss needs at least one of attention, classification, hidden")
    return torch.stack(present).sum()


def layerwise_classification_loss(
    *,
    hidden_states: Sequence[torch.Tensor],
    labels: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """LWP: sum over the embedding output and every layer of the CE of one shared head on that state."""
    # `head` maps a whole [batch, len, hidden] state to logits and picks the [CLS] position itself,
    # as the model's own head does (BERT: pooler then classifier; RoBERTa: its classification head).
    return torch.stack([classification_loss(logits=head(states), labels=labels) for states in hidden_states]).sum()
