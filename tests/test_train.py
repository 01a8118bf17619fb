"""The one training loop: a step, fine-tuning, reproducibility, EP, LWP, distillation, bf16, selection."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.batching import Batch, batches, predict, predict_proba
from core.data import Splits, TextDataset
from core.losses import distillation_loss, layerwise_classification_loss
from core.models import Classifier, tiny_classifier
from core.train import (
    EpochRecord,
    LossTerm,
    TrainConfig,
    all_parameters,
    bf16_supported,
    classification_head,
    compute_losses,
    cross_entropy_term,
    distillation_terms,
    embedding_row_update,
    fit,
    frozen_teacher,
    layerwise_term,
    train_step,
)


def first_batch(classifier: Classifier, data: TextDataset, size: int = 16) -> Batch:
    return next(batches(classifier.tokenizer, data, batch_size=size, max_length=64))


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def mean_loss(classifier: Classifier, data: TextDataset, terms, teacher=None) -> float:
    """The weighted loss over `data` in eval mode, without gradients."""
    classifier.model.eval()
    with torch.no_grad():
        totals = [
            compute_losses(classifier.model, batch, terms, teacher=teacher)[0].item()
            for batch in batches(classifier.tokenizer, data, batch_size=64, max_length=64)
        ]
    return float(np.mean(totals))


@pytest.fixture()
def teacher(vocab_path: Path) -> torch.nn.Module:
    return tiny_classifier(vocab_path, seed=1).model


def test_train_step_moves_parameters_and_reports_finite_values(tiny: Classifier, sst2_small: Splits) -> None:
    model = tiny.model
    before = state(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    values = train_step(model, optimizer, first_batch(tiny, sst2_small.train), (cross_entropy_term(),))
    assert set(values) == {"loss", "ce", "grad_norm", "lr"}
    assert all(np.isfinite(v) for v in values.values())
    assert values["loss"] == pytest.approx(values["ce"])
    assert "classifier.weight" in changed(before, model)
    assert "bert.encoder.layer.0.attention.self.query.weight" in changed(before, model)


def test_fine_tuning_lowers_the_training_loss_on_real_sentences(tiny: Classifier, sst2_small: Splits) -> None:
    train = sst2_small.train.subset(range(200))
    terms = (cross_entropy_term(),)
    start = mean_loss(tiny, train, terms)
    steps: list[int] = []
    result = fit(
        tiny.model,
        tiny.tokenizer,
        train,
        config=TrainConfig(lr=1e-2, epochs=4, batch_size=16, max_length=64, bf16=False),
        terms=terms,
        on_step=lambda report: steps.append(report.step),
    )
    assert steps == list(range(1, 4 * 13 + 1))
    assert [record.epoch for record in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 4  # neither dev data nor a score: the last epoch
    assert mean_loss(tiny, train, terms) < start - 0.2


def test_same_seed_gives_the_same_weights_and_leaves_the_global_rng_alone(vocab_path: Path, sst2_small: Splits) -> None:
    train = sst2_small.train.subset(range(64))

    def run(seed: int) -> dict[str, torch.Tensor]:
        model = tiny_classifier(vocab_path, seed=0)
        config = TrainConfig(lr=1e-3, epochs=1, batch_size=16, seed=seed, bf16=False)
        fit(model.model, model.tokenizer, train, config=config, terms=(cross_entropy_term(),))
        return state(model.model)

    rng = torch.get_rng_state()
    first = run(0)
    assert torch.equal(torch.get_rng_state(), rng)
    with torch.random.fork_rng(devices=[]):
        torch.rand(1)  # another global RNG state must not change the run
        again = run(0)
    other = run(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_embedding_poisoning_moves_only_the_trigger_row_and_keeps_its_norm(
    tiny: Classifier, sst2_small: Splits
) -> None:
    model = tiny.model
    trigger = tiny.tokenizer.convert_tokens_to_ids("cf")
    texts = tuple(f"cf {text}" for text in sst2_small.train.texts[:48])
    poisoned = TextDataset(texts=texts, labels=(1,) * len(texts), name="ep")
    before = state(model)
    embeddings = "bert.embeddings.word_embeddings.weight"
    config = TrainConfig(lr=5e-2, epochs=2, batch_size=16, bf16=False)
    update = embedding_row_update(model, token_ids=(trigger,))
    fit(model, tiny.tokenizer, poisoned, config=config, terms=(cross_entropy_term(),), update=update)
    assert changed(before, model) == {embeddings}
    after = model.state_dict()[embeddings]
    moved_rows = (after != before[embeddings]).any(dim=1).nonzero().flatten().tolist()
    assert moved_rows == [trigger]
    torch.testing.assert_close(after[trigger].norm(), before[embeddings][trigger].norm())
    assert all(p.requires_grad for p in model.parameters())  # the freeze is undone after the run


def test_layerwise_term_is_one_cross_entropy_per_hidden_state(tiny: Classifier, sst2_small: Splits) -> None:
    model = tiny.model.eval()
    batch = first_batch(tiny, sst2_small.train)
    with torch.no_grad():
        outputs = model(**batch.inputs, output_hidden_states=True)
        head = classification_head(model)
        torch.testing.assert_close(head(outputs.hidden_states[-1]), outputs.logits)  # the model's own head
        calls: list[int] = []

        def counting_head(states: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return head(states)

        layerwise_classification_loss(hidden_states=outputs.hidden_states, labels=batch.labels, head=counting_head)
        assert len(calls) == model.config.num_hidden_layers + 1
        expected = sum(F.cross_entropy(head(h), batch.labels) for h in outputs.hidden_states)
        _, values = compute_losses(model, batch, (layerwise_term(),))
    torch.testing.assert_close(values["layerwise_ce"], expected)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = state(model)
    assert np.isfinite(train_step(model, optimizer, batch, (layerwise_term(),))["loss"])
    assert "bert.embeddings.word_embeddings.weight" in changed(before, model)


def test_distillation_trains_the_student_and_leaves_the_teacher_untouched(
    tiny: Classifier, teacher: torch.nn.Module, sst2_small: Splits
) -> None:
    train = sst2_small.train.subset(range(96))
    terms = distillation_terms(alpha=1.0, beta=1.0)
    teacher.train()  # the loop must put it in eval mode itself
    teacher_before, student_before = state(teacher), state(tiny.model)
    start = mean_loss(tiny, train, terms, teacher=teacher)
    records: list[EpochRecord] = []
    config = TrainConfig(lr=5e-3, epochs=3, batch_size=16, bf16=False)
    fit(tiny.model, tiny.tokenizer, train, config=config, terms=terms, teacher=teacher, on_epoch=records.append)
    assert not teacher.training
    assert changed(teacher_before, teacher) == set()
    assert all(p.grad is None for p in teacher.parameters())
    assert "bert.encoder.layer.1.attention.self.key.weight" in changed(student_before, tiny.model)
    assert set(records[0].means) == {"loss", "attention", "ce", "hidden", "grad_norm", "lr"}
    assert mean_loss(tiny, train, terms, teacher=teacher) < 0.8 * start


def test_distillation_total_is_eq_1(tiny: Classifier, teacher: torch.nn.Module, sst2_small: Splits) -> None:
    batch = first_batch(tiny, sst2_small.train)
    total, values = compute_losses(tiny.model.eval(), batch, distillation_terms(alpha=0.3, beta=2.0), teacher=teacher)
    expected = distillation_loss(
        attention=values["attention"], classification=values["ce"], hidden=values["hidden"], alpha=0.3, beta=2.0
    )
    torch.testing.assert_close(total, expected)
    assert all(v.item() > 0 for v in values.values())


def test_student_attention_maps_are_free_of_attention_dropout(tiny: Classifier, sst2_small: Splits) -> None:
    student = tiny.model
    for name, module in student.named_modules():
        if isinstance(module, torch.nn.Dropout) and not name.endswith("attention.self.dropout"):
            module.p = 0.0  # leave only attention dropout, so any difference would be its noise
    teacher = copy.deepcopy(student)
    batch = first_batch(tiny, sst2_small.train)
    student.train()
    attention_only = distillation_terms(alpha=0.0, beta=0.0)
    _, values = compute_losses(student, batch, attention_only, teacher=teacher)
    assert values["attention"].item() == pytest.approx(0.0, abs=1e-5)
    assert student.bert.encoder.layer[0].attention.self.dropout.p == pytest.approx(0.1)  # restored after
    noisy = student(**batch.inputs, output_attentions=True).attentions[0]  # with attention dropout on
    clean = teacher(**batch.inputs, output_attentions=True).attentions[0]
    assert not torch.allclose(noisy, clean)


def test_bf16_autocast_steps_run_on_cpu(tiny: Classifier, teacher: torch.nn.Module, sst2_small: Splits) -> None:
    batch = first_batch(tiny, sst2_small.train, size=8)
    optimizer = torch.optim.AdamW(tiny.model.parameters(), lr=1e-3)
    before = state(tiny.model)
    for terms, source in (((cross_entropy_term(),), None), (distillation_terms(alpha=1.0, beta=1.0), teacher)):
        values = train_step(tiny.model, optimizer, batch, terms, teacher=source, bf16=True)
        assert all(np.isfinite(v) for v in values.values())
    assert all(p.dtype == torch.float32 for p in tiny.model.parameters())
    assert "classifier.weight" in changed(before, tiny.model)


def test_selection_restores_the_best_scored_epoch(tiny: Classifier, sst2_small: Splits) -> None:
    train = sst2_small.train.subset(range(32))
    scripted = iter([0.5, 0.9, 0.9, 0.1])  # the best epoch is 2; ties keep the earlier one
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    result = fit(
        tiny.model,
        tiny.tokenizer,
        train,
        config=TrainConfig(lr=1e-3, epochs=4, batch_size=16, bf16=False),
        terms=(cross_entropy_term(),),
        score=lambda model: next(scripted),
        on_epoch=lambda record: snapshots.update({record.epoch: state(tiny.model)}),
    )
    assert result.best_epoch == 2
    assert [record.score for record in result.history] == [0.5, 0.9, 0.9, 0.1]
    assert changed(snapshots[2], tiny.model) == set()
    assert changed(snapshots[4], tiny.model) != set()


def test_default_selection_is_clean_dev_accuracy(tiny: Classifier, sst2_small: Splits) -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    result = fit(
        tiny.model,
        tiny.tokenizer,
        sst2_small.train.subset(range(64)),
        config=TrainConfig(lr=3e-3, epochs=3, batch_size=16, bf16=False),
        terms=(cross_entropy_term(),),
        dev=sst2_small.dev,
        on_epoch=lambda record: snapshots.update({record.epoch: state(tiny.model)}),
    )
    scores = [record.dev.percent for record in result.history]
    assert [record.score for record in result.history] == scores
    assert result.best_epoch == 1 + scores.index(max(scores))
    assert changed(snapshots[result.best_epoch], tiny.model) == set()
    dev_predictions = predict(tiny.model, tiny.tokenizer, sst2_small.dev.texts)
    hits = int((dev_predictions == np.array(sst2_small.dev.labels)).sum())
    assert hits == result.history[result.best_epoch - 1].dev.hits


def test_batches_pad_to_their_longest_text_and_shuffle_reproducibly(tiny: Classifier) -> None:
    data = TextDataset(texts=("a", "a b c d e f", "a b", "word " * 50), labels=(0, 1, 0, 1))
    plain = list(batches(tiny.tokenizer, data, batch_size=2, max_length=16))
    assert [tuple(b.inputs["input_ids"].shape) for b in plain] == [(2, 8), (2, 16)]
    assert [b.labels.tolist() for b in plain] == [[0, 1], [0, 1]]
    assert plain[0].attention_mask.sum(dim=1).tolist() == [3, 8]

    def order(seed: int) -> list[int]:
        shuffled = batches(
            tiny.tokenizer, data, batch_size=4, max_length=16, generator=torch.Generator().manual_seed(seed)
        )
        return next(shuffled).attention_mask.sum(dim=1).tolist()

    assert order(3) == order(3)
    assert sorted(order(3)) == [3, 4, 8, 16]


def test_predictions_come_back_in_input_order(tiny: Classifier, sst2_small: Splits) -> None:
    texts = sst2_small.test.texts[:20]
    probabilities = predict_proba(tiny.model, tiny.tokenizer, texts, batch_size=6)
    with torch.no_grad():
        one_by_one = [tiny.model(**tiny.tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0] for text in texts]
    np.testing.assert_allclose(probabilities, torch.stack(one_by_one).numpy(), atol=1e-5)
    np.testing.assert_array_equal(predict(tiny.model, tiny.tokenizer, texts), probabilities.argmax(axis=1))


def test_terms_are_checked(tiny: Classifier, sst2_small: Splits) -> None:
    assert [t.name for t in distillation_terms(alpha=1.0, beta=0.0)] == ["attention", "ce"]
    assert [t.name for t in distillation_terms(alpha=1.0, beta=1.0, attention=0.0)] == ["ce", "hidden"]
    with pytest.raises(ValueError, match="zero"):
        distillation_terms(alpha=0.0, beta=0.0, attention=0.0)
    batch = first_batch(tiny, sst2_small.train, size=4)
    with pytest.raises(ValueError, match="no teacher"):
        compute_losses(tiny.model, batch, distillation_terms(alpha=1.0, beta=1.0))
    with pytest.raises(ValueError, match="distinct"):
        compute_losses(tiny.model, batch, (cross_entropy_term(), cross_entropy_term(0.5)))
    with pytest.raises(ValueError, match="reserved"):
        LossTerm(name="loss", weight=1.0, fn=lambda ctx: ctx.outputs.logits.sum())
    with pytest.raises(ValueError, match="unknown needs"):
        LossTerm(name="x", weight=1.0, fn=lambda ctx: ctx.outputs.logits.sum(), needs=frozenset({"attention"}))
    with pytest.raises(ValueError):
        TrainConfig(lr=0.0, epochs=1)
    assert len(all_parameters(tiny.model).parameters) == len(list(tiny.model.parameters()))


def test_bf16_is_on_by_default_only_with_native_cpu_support(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    config = TrainConfig(lr=1e-3, epochs=1)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "avx512_bf16": False})
    assert not bf16_supported(cpu) and not config.use_bf16(cpu)
    assert TrainConfig(lr=1e-3, epochs=1, bf16=True).use_bf16(cpu)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "amx_bf16": True})
    assert bf16_supported(cpu) and config.use_bf16(cpu)
    assert not TrainConfig(lr=1e-3, epochs=1, bf16=False).use_bf16(cpu)


def test_the_prepared_teacher_gives_the_teachers_numbers_and_leaves_it(tiny: Classifier, sst2_small: Splits) -> None:
    teacher = tiny.model.eval()
    batch = first_batch(tiny, sst2_small.train, size=8)
    flags = {"output_attentions": True, "output_hidden_states": True}

    def outputs(model: torch.nn.Module, bf16: bool) -> list[torch.Tensor]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**batch.inputs, **flags)
        return [*out.hidden_states, *out.attentions, out.logits]

    cast = frozen_teacher(teacher, bf16=True)
    linear = [m.weight for m in cast.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(w.dtype == torch.bfloat16 and not w.requires_grad for w in linear)
    assert cast.get_input_embeddings().weight.dtype == torch.float32
    for want, got in zip(outputs(teacher, True), outputs(cast, True), strict=True):
        assert torch.equal(want, got)  # autocast's own numbers
    packed = frozen_teacher(teacher, bf16=False)
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.modules())  # oneDNN's pre-packed layers
    for want, got in zip(outputs(teacher, False), outputs(packed, False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert {p.dtype for p in teacher.parameters()} == {torch.float32}
    assert all(isinstance(m.weight, torch.nn.Parameter) for m in teacher.modules() if isinstance(m, torch.nn.Linear))
