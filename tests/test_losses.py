"""Eq. 1-7 and LWP's loss against hand and direct computations, including padding invariance."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from core.losses import (
    attention_enhancement,
    attention_transfer_loss,
    classification_loss,
    distillation_loss,
    hidden_state_loss,
    layerwise_classification_loss,
)
from core.models import Classifier


def random_attention(generator: torch.Generator, batch: int, heads: int, length: int) -> torch.Tensor:
    """Row-stochastic maps like softmax attention probabilities."""
    return torch.randn(batch, heads, length, length, generator=generator).softmax(dim=-1)


def direct_at(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Eq. 3-4 for one example written out literally: [heads, l, l] maps, no padding."""
    ae_t = sum(teacher[j] ** 2 for j in range(teacher.shape[0]))
    ae_s = sum(student[j] ** 2 for j in range(student.shape[0]))
    return torch.sqrt(((ae_t / ae_t.norm() - ae_s / ae_s.norm()) ** 2).sum())


def pad_maps(maps: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """[batch, heads, l, l] maps embedded in a longer length, padded cells filled with noise."""
    batch, heads, valid, _ = maps.shape
    padded = torch.rand(batch, heads, length, length, generator=generator)
    padded[:, :, :valid, :valid] = maps
    return padded


def test_attention_enhancement_sums_squares_over_heads() -> None:
    attention = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]], [[0.1, 0.9], [0.0, 1.0]]]])  # [1, 2 heads, 2, 2]
    expected = torch.tensor([[[0.25 + 0.01, 0.25 + 0.81], [1.0, 1.0]]])
    torch.testing.assert_close(attention_enhancement(attention=attention), expected)


def test_attention_transfer_is_zero_for_identical_maps_with_finite_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    maps = tuple(random_attention(g, 3, 2, 6) for _ in range(2))
    student = tuple(m.clone().requires_grad_(True) for m in maps)
    loss = attention_transfer_loss(teacher_attentions=maps, student_attentions=student, attention_mask=torch.ones(3, 6))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert all(torch.isfinite(m.grad).all() for m in student)


def test_attention_transfer_is_invariant_to_scaling_a_map() -> None:
    g = torch.Generator().manual_seed(1)
    teacher = (random_attention(g, 4, 2, 5),)
    student = (random_attention(g, 4, 2, 5),)
    mask = torch.ones(4, 5)
    base = attention_transfer_loss(teacher_attentions=teacher, student_attentions=student, attention_mask=mask)
    scaled = attention_transfer_loss(
        teacher_attentions=(teacher[0] * 3.7,), student_attentions=(student[0] * 0.2,), attention_mask=mask
    )
    assert base.item() > 0.05
    torch.testing.assert_close(scaled, base)


def test_attention_transfer_matches_eq_4_summed_over_layers_and_averaged_over_batch() -> None:
    g = torch.Generator().manual_seed(2)
    layers, batch = 3, 4
    teacher = tuple(random_attention(g, batch, 2, 7) for _ in range(layers))
    student = tuple(random_attention(g, batch, 2, 7) for _ in range(layers))
    expected = sum(sum(direct_at(teacher[n][b], student[n][b]) for b in range(batch)) / batch for n in range(layers))
    loss = attention_transfer_loss(
        teacher_attentions=teacher, student_attentions=student, attention_mask=torch.ones(batch, 7)
    )
    torch.testing.assert_close(loss, expected)


def direct_at_along(teacher: torch.Tensor, student: torch.Tensor, axis: str) -> torch.Tensor:
    """The other readings of eq. 4 for one unpadded example, written out vector by vector."""
    ae_t = sum(teacher[j] ** 2 for j in range(teacher.shape[0]))
    ae_s = sum(student[j] ** 2 for j in range(student.shape[0]))
    if axis == "received":
        t, s = ae_t.sum(dim=0), ae_s.sum(dim=0)
        return torch.sqrt(((t / t.norm() - s / s.norm()) ** 2).sum())
    if axis == "column":
        ae_t, ae_s = ae_t.T, ae_s.T
    rows = [torch.sqrt(((t / t.norm() - s / s.norm()) ** 2).sum()) for t, s in zip(ae_t, ae_s, strict=True)]
    return torch.stack(rows).mean()


@pytest.mark.parametrize("axis", ["row", "column", "received"])
def test_attention_transfer_along_other_axes_matches_a_direct_computation(axis: str) -> None:
    g = torch.Generator().manual_seed(5)
    teacher = tuple(random_attention(g, 3, 2, 6) for _ in range(2))
    student = tuple(random_attention(g, 3, 2, 6) for _ in range(2))
    expected = sum(sum(direct_at_along(teacher[n][b], student[n][b], axis) for b in range(3)) / 3 for n in range(2))
    loss = attention_transfer_loss(
        teacher_attentions=teacher, student_attentions=student, attention_mask=torch.ones(3, 6), axis=axis
    )
    whole_map = attention_transfer_loss(
        teacher_attentions=teacher, student_attentions=student, attention_mask=torch.ones(3, 6)
    )
    torch.testing.assert_close(loss, expected)
    assert abs(loss.item() - whole_map.item()) > 1e-3  # a different quantity from the paper's eq. 4


def test_attention_transfer_rejects_an_unknown_axis() -> None:
    maps = (torch.ones(1, 1, 2, 2),)
    with pytest.raises(ValueError, match="unknown attention axis 'heads'"):
        attention_transfer_loss(
            teacher_attentions=maps, student_attentions=maps, attention_mask=torch.ones(1, 2), axis="heads"
        )


@pytest.mark.parametrize("axis", ["map", "row", "column", "received"])
def test_attention_transfer_ignores_padded_rows_and_columns(axis: str) -> None:
    g = torch.Generator().manual_seed(3)
    lengths = (3, 5, 8)
    teachers = [random_attention(g, 1, 2, n) for n in lengths]
    students = [random_attention(g, 1, 2, n) for n in lengths]
    alone = [
        attention_transfer_loss(
            teacher_attentions=(t,), student_attentions=(s,), attention_mask=torch.ones(1, t.shape[-1]), axis=axis
        )
        for t, s in zip(teachers, students, strict=True)
    ]
    mask = torch.tensor([[1.0] * n + [0.0] * (8 - n) for n in lengths])
    batched = attention_transfer_loss(
        teacher_attentions=(torch.cat([pad_maps(t, 8, g) for t in teachers]),),
        student_attentions=(torch.cat([pad_maps(s, 8, g) for s in students]),),
        attention_mask=mask,
        axis=axis,
    )
    torch.testing.assert_close(batched, torch.stack(alone).mean())


def test_hidden_state_loss_is_mse_over_valid_tokens_summed_over_states() -> None:
    g = torch.Generator().manual_seed(4)
    teacher = tuple(torch.randn(2, 4, 3, generator=g) for _ in range(3))
    student = tuple(torch.randn(2, 4, 3, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    expected = sum(
        F.mse_loss(torch.cat([t[0], t[1, :2]]), torch.cat([s[0], s[1, :2]]))
        for t, s in zip(teacher, student, strict=True)
    )
    loss = hidden_state_loss(teacher_hidden_states=teacher, student_hidden_states=student, attention_mask=mask)
    torch.testing.assert_close(loss, expected)
    noisy = tuple(s.clone() for s in student)
    for s in noisy:
        s[1, 2:] = 1e3  # padded positions of the second example
    unchanged = hidden_state_loss(teacher_hidden_states=teacher, student_hidden_states=noisy, attention_mask=mask)
    torch.testing.assert_close(unchanged, expected)


def test_hidden_state_loss_hand_case() -> None:
    teacher = (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    student = (torch.tensor([[[1.0, 3.0], [9.0, 9.0]]]), torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]))
    loss = hidden_state_loss(
        teacher_hidden_states=teacher, student_hidden_states=student, attention_mask=torch.tensor([[1, 0]])
    )
    assert loss.item() == pytest.approx((1 + 9) / 2 + (4 + 0) / 2)


def test_classification_loss_is_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    expected = (-torch.log_softmax(logits, dim=-1)[[0, 1], [0, 0]]).mean()
    torch.testing.assert_close(classification_loss(logits=logits, labels=labels), expected)


def test_distillation_loss_weights_and_ablations() -> None:
    a, c, h = torch.tensor(0.5), torch.tensor(2.0), torch.tensor(10.0)
    full = distillation_loss(attention=a, classification=c, hidden=h, alpha=0.3, beta=0.01)
    assert full.item() == pytest.approx(0.5 + 0.6 + 0.1)
    no_att = distillation_loss(attention=None, classification=c, hidden=h, alpha=0.3, beta=0.01)
    assert no_att.item() == pytest.approx(0.7)
    no_hid = distillation_loss(attention=a, classification=c, hidden=None, alpha=1.0, beta=5.0)
    assert no_hid.item() == pytest.approx(2.5)
    with pytest.raises(ValueError):
        distillation_loss(attention=None, classification=None, hidden=None, alpha=1.0, beta=1.0)


def test_layerwise_loss_applies_one_head_to_every_state() -> None:
    g = torch.Generator().manual_seed(5)
    states = tuple(torch.randn(3, 4, 6, generator=g) for _ in range(4))
    labels = torch.tensor([0, 1, 1])
    linear = torch.nn.Linear(6, 2)
    calls: list[int] = []

    def head(sequence: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return linear(sequence[:, 0])

    loss = layerwise_classification_loss(hidden_states=states, labels=labels, head=head)
    assert len(calls) == 4
    expected = sum(F.cross_entropy(linear(s[:, 0]), labels) for s in states)
    torch.testing.assert_close(loss, expected)


def test_losses_on_a_real_model_do_not_depend_on_padding(tiny: Classifier) -> None:
    teacher = tiny.model.eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    texts = ["a gripping film", "an utterly tedious and overlong mess of a movie , sadly"]

    def losses(batch_texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
        encoded = tiny.tokenizer(batch_texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            t = teacher(**encoded, output_attentions=True, output_hidden_states=True)
            s = student(**encoded, output_attentions=True, output_hidden_states=True)
        mask = encoded["attention_mask"]
        at = attention_transfer_loss(
            teacher_attentions=t.attentions, student_attentions=s.attentions, attention_mask=mask
        )
        hid = hidden_state_loss(
            teacher_hidden_states=t.hidden_states, student_hidden_states=s.hidden_states, attention_mask=mask
        )
        return at, hid, int(mask.sum())

    at_short, hid_short, n_short = losses(texts[:1])
    at_long, hid_long, n_long = losses(texts[1:])
    at_both, hid_both, _ = losses(texts)
    assert at_short.item() > 1e-3 and hid_short.item() > 1e-3
    torch.testing.assert_close(at_both, (at_short + at_long) / 2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        hid_both, (n_short * hid_short + n_long * hid_long) / (n_short + n_long), atol=1e-6, rtol=1e-4
    )
