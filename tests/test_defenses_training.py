"""Training-based defences on the tiny BERT and real SST-2 sentences: CFT, Reinitialization,
Fine-Pruning, retraining on augmented data, and MBTSAD with its ablations."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import core.defenses.cft as cft_module
from core.augment import token_split
from core.data import Splits, TextDataset, clean_subset, non_target, poisoned_eval_set
from core.defenses.aug_ft import AugFtConfig, aug_ft, augmented_set
from core.defenses.base import DefenseInputs
from core.defenses.cft import CftConfig, cft, clean_finetune
from core.defenses.fine_pruning import (
    MASK_BUFFER,
    FinePruningConfig,
    choose_pruning,
    fine_pruning,
    mean_activations,
    prune,
)
from core.defenses.mbtsad import (
    MBTSAD_VARIANTS,
    TERMS,
    MbtsadConfig,
    loss_terms,
    mbtsad,
    mbtsad_with_teacher,
    variant,
)
from core.defenses.reinit import ReinitConfig, last_encoder_layer, reinitialization, reinitialize_last_layer
from core.losses import attention_transfer_loss
from core.metrics import attack_success_rate, clean_accuracy
from core.models import Classifier, tiny_classifier
from core.train import TrainConfig, batches, compute_losses, cross_entropy_term, fit, predict, train_step

MAX_LENGTH = 32
QUICK = TrainConfig(lr=1e-3, epochs=1, batch_size=32, max_length=MAX_LENGTH, bf16=False)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def same_weights(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> bool:
    current = model.state_dict()
    return current.keys() == snapshot.keys() and all(torch.equal(current[k], v) for k, v in snapshot.items())


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run several times faster on one thread when the CPUs are shared (27 s vs 1 s measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def suspect(vocab_path: Path, sst2_small: Splits) -> Classifier:
    """A tiny classifier trained on 400 SST-2 sentences to about 69% dev accuracy, so accuracy means something.
    Random batches: this seed's model then leans on its last FFN layer, so Fine-Pruning's clean-dev curve falls
    (trained on length-grouped batches it stays flat at 65%, and no tolerance could stop the pruning early)."""
    classifier = tiny_classifier(vocab_path, seed=0)
    config = TrainConfig(lr=3e-3, epochs=5, max_length=MAX_LENGTH, bf16=False, group_by_length=False)
    fit(classifier.model, classifier.tokenizer, sst2_small.train, config=config, terms=(cross_entropy_term(),),
        dev=sst2_small.dev)
    return classifier


@pytest.fixture(scope="module")
def inputs(suspect: Classifier, sst2_small: Splits) -> DefenseInputs:
    clean = clean_subset(sst2_small.train, 0.3, np.random.default_rng(0))  # 120 sentences
    return DefenseInputs(suspect=suspect, clean=clean, dev=sst2_small.dev, seed=0)


# ----------------------------------------------------------------------------------------- CFT


def test_cft_returns_a_changed_copy_and_leaves_the_suspect(inputs: DefenseInputs) -> None:
    before = state(inputs.suspect.model)
    epochs: list[int] = []
    result = cft(inputs, CftConfig(train=QUICK), on_epoch=lambda record: epochs.append(record.epoch))
    assert result.model is not inputs.suspect.model
    assert same_weights(inputs.suspect.model, before)
    assert not same_weights(result.model, before)
    assert epochs == [1]
    assert not result.model.training


def test_clean_finetune_is_deterministic_per_seed(inputs: DefenseInputs) -> None:
    data = inputs.clean.subset(range(40))
    runs = [clean_finetune(inputs.suspect, data, inputs.dev, train_config=QUICK, seed=s) for s in (3, 3, 4)]
    assert same_weights(runs[1].model, state(runs[0].model))
    assert not same_weights(runs[2].model, state(runs[0].model))


# ------------------------------------------------------------------------------ Reinitialization


def test_reinit_resets_only_the_last_layer_with_the_model_initialiser(suspect: Classifier) -> None:
    before = state(suspect.model)
    model = copy.deepcopy(suspect.model)
    rng_before = torch.random.get_rng_state()
    reinitialize_last_layer(model, seed=7)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # no global RNG
    prefix = f"bert.encoder.layer.{model.config.num_hidden_layers - 1}."
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(prefix) for k in changed)
    assert {k for k in before if k.startswith(prefix) and k.endswith(".weight")} <= changed
    linear_weights = []
    for module in last_encoder_layer(model).modules():
        if isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
        elif isinstance(module, nn.Linear):
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
            linear_weights.append(module.weight.detach().flatten())
    pooled = torch.cat(linear_weights)
    assert len(linear_weights) == 6 and pooled.numel() > 8000
    assert abs(pooled.mean().item()) < 0.002
    assert abs(pooled.std().item() - model.config.initializer_range) < 0.001
    again = reinitialize_last_layer(copy.deepcopy(suspect.model), seed=7)
    other = reinitialize_last_layer(copy.deepcopy(suspect.model), seed=8)
    assert same_weights(again, state(model))
    assert not same_weights(other, state(model))


def test_reinit_xavier_scheme(suspect: Classifier) -> None:
    model = reinitialize_last_layer(copy.deepcopy(suspect.model), seed=0, scheme="xavier")
    dense = last_encoder_layer(model).intermediate.dense
    bound = math.sqrt(6 / (dense.in_features + dense.out_features))
    weight = dense.weight.detach()
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert abs(weight.std().item() - bound / math.sqrt(3)) < 0.1 * bound
    with pytest.raises(ValueError, match="valid: model, xavier"):
        reinitialize_last_layer(model, seed=0, scheme="kaiming")


def test_reinitialization_defense_leaves_the_suspect(inputs: DefenseInputs) -> None:
    before = state(inputs.suspect.model)
    result = reinitialization(inputs, ReinitConfig(cft=CftConfig(train=QUICK)))
    assert same_weights(inputs.suspect.model, before)
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(result.model.state_dict()[embeddings], before[embeddings])  # CFT trains everything


# ---------------------------------------------------------------------------------- Fine-Pruning


def direct_mean_activations(classifier: Classifier, texts: tuple[str, ...]) -> torch.Tensor:
    """Per sentence, unpadded: GELU of the last layer's FFN pre-activation, averaged over all tokens."""
    layer = last_encoder_layer(classifier.model)
    captured: list[torch.Tensor] = []
    handle = layer.intermediate.dense.register_forward_hook(lambda _m, _a, out: captured.append(out))
    classifier.model.eval()
    try:
        with torch.no_grad():
            for text in texts:
                encoded = classifier.tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
                classifier.model(**encoded)
    finally:
        handle.remove()
    tokens = torch.cat([nn.functional.gelu(out[0]) for out in captured])
    return tokens.mean(dim=0)


PRUNE = FinePruningConfig(step=0.05, tolerance=2.0, cft=CftConfig(train=QUICK))


def dev_percent(classifier: Classifier, dev: TextDataset) -> float:
    predictions = predict(classifier.model, classifier.tokenizer, dev.texts, max_length=MAX_LENGTH)
    return clean_accuracy(predictions=predictions, labels=dev.labels).percent


def test_mean_activations_match_a_direct_computation(inputs: DefenseInputs) -> None:
    texts = inputs.clean.texts[:40]
    ours = mean_activations(inputs.suspect, inputs.clean.subset(range(40)), batch_size=16, max_length=MAX_LENGTH)
    assert torch.allclose(ours, direct_mean_activations(inputs.suspect, texts), atol=1e-5)


def test_fine_pruning_masks_the_lowest_neurons_within_tolerance(inputs: DefenseInputs) -> None:
    choice = choose_pruning(inputs.suspect, inputs.clean, inputs.dev, PRUNE)
    width = inputs.suspect.model.config.intermediate_size
    direct = direct_mean_activations(inputs.suspect, inputs.clean.texts)
    assert sorted(choice.order) == list(range(width))
    assert direct[list(choice.order)].diff().min() > -1e-6  # ascending mean activation (up to float noise)
    pruned = torch.tensor(choice.order[: choice.pruned], dtype=torch.long)
    assert torch.equal((choice.mask == 0).nonzero().flatten(), pruned.sort().values)
    # The clean-dev curve measured independently, with the weights alone (mask hooks removed).
    unpruned = dev_percent(inputs.suspect, inputs.dev)
    assert unpruned == choice.unpruned_dev.percent
    steps = sorted({round(i * PRUNE.step * width) for i in range(1, 21)})
    curve = {}
    for count in steps:
        model = prune(inputs.suspect, replace(choice, pruned=count)).model
        last_encoder_layer(model).intermediate._forward_hooks.clear()
        curve[count] = dev_percent(Classifier(model=model, tokenizer=inputs.suspect.tokenizer), inputs.dev)
    stops = []
    for tolerance in (0.0, 1.0, PRUNE.tolerance, 100.0):
        expected = 0
        for count in steps:  # the rule: stop at the first step that falls more than `tolerance` below
            if unpruned - curve[count] > tolerance:
                break
            expected = count
        got = choose_pruning(inputs.suspect, inputs.clean, inputs.dev, replace(PRUNE, tolerance=tolerance))
        assert got.pruned == expected and got.order == choice.order
        assert got.pruned_dev.percent == curve.get(expected, unpruned) >= unpruned - tolerance
        stops.append(expected)
    assert stops[0] < width and stops[-1] == width  # a strict tolerance stops early, a loose one prunes all
    assert stops == sorted(stops)


def test_fine_pruning_mask_persists_after_cft(inputs: DefenseInputs, vocab_path: Path) -> None:
    before = state(inputs.suspect.model)
    result = fine_pruning(inputs, PRUNE)
    assert same_weights(inputs.suspect.model, before)
    choice = choose_pruning(inputs.suspect, inputs.clean, inputs.dev, PRUNE)
    pruned = choice.mask == 0
    layer = last_encoder_layer(result.model)
    assert torch.equal(getattr(layer.intermediate, MASK_BUFFER), choice.mask)
    assert not layer.intermediate.dense.weight[pruned].any() and not layer.intermediate.dense.bias[pruned].any()
    assert not layer.output.dense.weight[:, pruned].any()
    assert layer.intermediate.dense.weight[~pruned].abs().min() > 0
    assert not torch.equal(layer.intermediate.dense.weight[~pruned], before[
        "bert.encoder.layer.1.intermediate.dense.weight"][~pruned])  # the kept neurons were fine-tuned
    # Saved weights alone (no hook, no buffer) give a pruned model.
    assert MASK_BUFFER not in "".join(result.model.state_dict())
    fresh = tiny_classifier(vocab_path, seed=1).model
    fresh.load_state_dict(result.model.state_dict())
    outputs: list[torch.Tensor] = []
    last_encoder_layer(fresh).intermediate.register_forward_hook(lambda _m, _a, out: outputs.append(out))
    with torch.no_grad():
        fresh(**inputs.suspect.tokenizer(list(inputs.dev.texts[:8]), padding=True, return_tensors="pt"))
    assert not outputs[0][..., pruned].any() and outputs[0][..., ~pruned].any()


# ------------------------------------------------------------------------- retraining on D_a


def test_aug_ft_trains_on_three_augmented_copies_per_sample(
    inputs: DefenseInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TextDataset] = []
    real_fit = cft_module.fit

    def spy(model: nn.Module, tokenizer: object, train: TextDataset, **kwargs: object) -> object:
        seen.append(train)
        return real_fit(model, tokenizer, train, **kwargs)

    monkeypatch.setattr(cft_module, "fit", spy)
    small = replace(inputs, clean=inputs.clean.subset(range(50)))
    before = state(inputs.suspect.model)
    result = aug_ft(small, AugFtConfig(train=QUICK))
    assert same_weights(inputs.suspect.model, before) and not same_weights(result.model, before)
    (data,) = seen
    assert len(data) == 3 * len(small.clean) == 150
    assert data.labels == tuple(y for y in small.clean.labels for _ in range(3))
    rng = np.random.default_rng(small.seed)
    assert data.texts[:3] == tuple(token_split(small.clean.texts[0], rng) for _ in range(3))
    assert sum(text not in small.clean.texts for text in data.texts) > 100  # most copies are split
    assert augmented_set(small.clean, AugFtConfig(), seed=0) == data  # a cached teacher sees the same D_a
    aug_ft(small, AugFtConfig(augmentation="aeda", train=QUICK), augment=lambda text, _rng: text.upper())
    assert seen[-1].texts[0] == small.clean.texts[0].upper()


def test_aug_ft_config_checks_names() -> None:
    with pytest.raises(ValueError, match="valid: ts, eda, aeda, cwea, add_trig"):
        AugFtConfig(augmentation="split")
    with pytest.raises(ValueError, match="masked LM"):
        augmented_set(TextDataset(("a sentence",), (0,)), AugFtConfig(augmentation="cwea"), seed=0)


# ------------------------------------------------------------------------------------- MBTSAD


def test_ablation_presets_drop_exactly_their_terms() -> None:
    expected = {  # kept terms, then the data of step 1 and of step 2
        "mbtsad": ({"attention", "ce", "hidden"}, "augmented", "augmented"),
        "mbtsad-no-att": ({"ce", "hidden"}, "augmented", "augmented"),
        "mbtsad-no-hid": ({"attention", "ce"}, "augmented", "augmented"),
        "cd": ({"ce"}, "augmented", "augmented"),
        "mbtsad-cft-teacher": ({"attention", "ce", "hidden"}, "clean", "augmented"),
        "nad": ({"attention", "ce"}, "clean", "clean"),  # NAD: CE and attention transfer only, all on D_c
    }
    assert set(MBTSAD_VARIANTS) == set(expected)
    for name, (names, teacher_data, distil_data) in expected.items():
        config = variant(name, alpha=0.5, beta=2.0)
        terms = {term.name: term.weight for term in loss_terms(config)}
        assert set(terms) == names
        assert terms.get("attention", 1.0) == 1.0 and terms["ce"] == 0.5 and terms.get("hidden", 2.0) == 2.0
        assert (config.teacher_data, config.distil_data) == (teacher_data, distil_data)
        # Everything but the kept terms and the data is MBTSAD's own setting.
        plain = replace(MBTSAD_VARIANTS[name], terms=TERMS, teacher_data="augmented", distil_data="augmented")
        assert plain == MbtsadConfig()
    defaults = MbtsadConfig()
    assert (defaults.train.lr, defaults.teacher.train.lr, defaults.teacher.augmentation) == (5e-4, 2e-5, "ts")
    assert defaults.attention_axis == "map"  # SPEC's eq. 4 on the flattened map
    assert {f.name for f in fields(MbtsadConfig)} == {
        "teacher", "alpha", "beta", "terms", "train", "attention_axis", "teacher_data", "distil_data"
    }
    with pytest.raises(ValueError, match="attention_axis must be one of"):
        MbtsadConfig(attention_axis="heads")
    with pytest.raises(ValueError, match="teacher_data and distil_data must be one of"):
        MbtsadConfig(distil_data="dev")
    with pytest.raises(ValueError, match="valid: mbtsad, mbtsad-no-att"):
        variant("mbtsad-no-cls")
    with pytest.raises(ValueError, match="terms must be"):
        MbtsadConfig(terms=("attention", "cls"))


def test_distillation_loss_falls_and_only_the_student_learns(inputs: DefenseInputs, vocab_path: Path) -> None:
    teacher = tiny_classifier(vocab_path, seed=3).model.eval()
    teacher_before = state(teacher)
    student = copy.deepcopy(inputs.suspect.model)
    student_before = state(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    batch = next(batches(inputs.suspect.tokenizer, inputs.clean, batch_size=16, max_length=MAX_LENGTH))
    terms = loss_terms(MbtsadConfig())
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(6):
            values = train_step(student, optimizer, batch, terms, teacher=teacher)
            assert {"attention", "ce", "hidden"} <= set(values) and all(math.isfinite(v) for v in values.values())
            losses.append(values["loss"])
            assert all(p.grad is None for p in teacher.parameters())
    assert losses[-1] < 0.9 * losses[0]
    assert same_weights(teacher, teacher_before) and not same_weights(student, student_before)


def test_attention_maps_for_the_transfer_loss_are_dropout_free(suspect: Classifier) -> None:
    teacher = copy.deepcopy(suspect.model).eval()
    student = copy.deepcopy(suspect.model).train()
    for name, module in student.named_modules():  # only attention-probability dropout stays on
        if isinstance(module, nn.Dropout) and not name.endswith("attention.self.dropout"):
            module.p = 0.0
    batch = next(batches(suspect.tokenizer, TextDataset(("a fine , funny film",) * 4, (1,) * 4),
                         batch_size=4, max_length=MAX_LENGTH))
    _, values = compute_losses(student, batch, loss_terms(MbtsadConfig()), teacher=teacher)
    assert values["attention"].item() < 1e-5 and values["hidden"].item() < 1e-10
    # Control: the same student's maps with attention dropout on are far from the teacher's.
    with torch.no_grad():
        noisy = student(**batch.inputs, output_attentions=True).attentions
        clean = teacher(**batch.inputs, output_attentions=True).attentions
    noise = attention_transfer_loss(
        teacher_attentions=clean, student_attentions=noisy, attention_mask=batch.attention_mask
    )
    assert noise.item() > 0.01


def test_mbtsad_trains_a_teacher_and_distils_a_copy(inputs: DefenseInputs) -> None:
    small = replace(inputs, clean=inputs.clean.subset(range(40)))
    config = MbtsadConfig(teacher=AugFtConfig(train=QUICK), train=QUICK)
    before = state(inputs.suspect.model)
    epochs: list[int] = []
    result = mbtsad_with_teacher(small, config, on_epoch=lambda record: epochs.append(record.epoch))
    assert epochs == [1, 1]  # the teacher's epoch, then the student's
    assert same_weights(inputs.suspect.model, before)
    assert result.teacher is not None and result.student.model is not result.teacher.model
    for model in (result.teacher.model, result.student.model):
        assert not same_weights(model, before)
    assert not same_weights(result.student.model, state(result.teacher.model))
    assert {"attention", "ce", "hidden"} <= set(result.distillation.history[0].means)
    # A given teacher is used as is: no step 1, and it is not modified.
    teacher_before = state(result.teacher.model)
    epochs.clear()
    student = mbtsad(small, config, teacher=result.teacher, on_epoch=lambda record: epochs.append(record.epoch))
    assert epochs == [1] and same_weights(result.teacher.model, teacher_before)
    assert same_weights(student.model, state(result.student.model))  # same D_a, seed and teacher
    # CD reads no teacher, so none is trained.
    cd = mbtsad_with_teacher(small, replace(config, terms=("ce",)))
    assert cd.teacher is None and set(cd.distillation.history[0].means) == {"loss", "ce", "grad_norm", "lr"}


def test_nad_distils_on_clean_data_toward_the_cft_model_with_ce_and_attention_only(
    inputs: DefenseInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TextDataset] = []
    real_fit = cft_module.fit

    def spy(model: nn.Module, tokenizer: object, train: TextDataset, **kwargs: object) -> object:
        seen.append(train)
        return real_fit(model, tokenizer, train, **kwargs)

    monkeypatch.setattr(cft_module, "fit", spy)
    small = replace(inputs, clean=inputs.clean.subset(range(40)))
    config = variant("nad", alpha=0.5, beta=2.0, teacher=AugFtConfig(train=QUICK), train=QUICK)
    before = state(inputs.suspect.model)
    steps: list[set[str]] = []
    result = mbtsad_with_teacher(small, config, on_step=lambda report: steps.append(set(report.values)))
    assert same_weights(inputs.suspect.model, before)
    # The teacher is CFT of the same seed, trained on D_c itself: no token splitting anywhere.
    assert seen == [small.clean]
    assert result.teacher is not None
    assert same_weights(result.teacher.model, state(cft(small, CftConfig(train=QUICK)).model))
    # The teacher's steps are CE only; the student's are CE and attention transfer, nothing else (no L_h, beta
    # unused), one epoch of D_c's 40 sentences (2 batches; D_a would take 4).
    student_steps = [values for values in steps if "attention" in values]
    assert steps[: -len(student_steps)] == [{"loss", "ce", "grad_norm", "lr"}] * 2
    assert student_steps == [{"loss", "attention", "ce", "grad_norm", "lr"}] * 2
    assert not same_weights(result.student.model, before)
    # Its loss is L_a + alpha CE on a batch of D_c: the weights of eq. 1 with L_h dropped.
    batch = next(batches(inputs.suspect.tokenizer, small.clean, batch_size=16, max_length=MAX_LENGTH))
    total, values = compute_losses(result.student.model, batch, loss_terms(config), teacher=result.teacher.model)
    assert set(values) == {"attention", "ce"}
    assert total.item() == pytest.approx(values["attention"].item() + 0.5 * values["ce"].item(), rel=1e-6)


def test_mbtsad_with_a_cft_teacher_changes_only_the_teacher(inputs: DefenseInputs) -> None:
    small = replace(inputs, clean=inputs.clean.subset(range(40)))
    config = variant("mbtsad-cft-teacher", teacher=AugFtConfig(train=QUICK), train=QUICK)
    result = mbtsad_with_teacher(small, config)
    cft_model = cft(small, CftConfig(train=QUICK))
    assert result.teacher is not None and same_weights(result.teacher.model, state(cft_model.model))
    assert {"attention", "ce", "hidden"} <= set(result.distillation.history[0].means)
    # Given that teacher, full MBTSAD (distillation on D_a, all three terms) distils the very same student.
    same = mbtsad(small, MbtsadConfig(teacher=AugFtConfig(train=QUICK), train=QUICK), teacher=cft_model)
    assert same_weights(same.model, state(result.student.model))


# ---------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_mbtsad_lowers_badnets_asr_on_a_tiny_backdoored_model(vocab_path: Path, sst2: Splits) -> None:
    """BadNets on 2,000 SST-2 sentences, then MBTSAD with D_c = 20% of them; about a minute on one core.

    The tiny model is trained from scratch at lr 1e-3, so the paper's rates (2e-5 retraining and 5e-4
    distillation, set for a pre-trained BERT) are scaled to it: retraining at the attack's own rate,
    distillation ten times higher. At the paper's rates the tiny model barely moves (ASR 89 -> 89).
    """
    from core.poison import PoisonConfig, poison_training_set, trigger_inserter

    start = time.perf_counter()
    train, dev, test = sst2.train.subset(range(2000)), sst2.dev.subset(range(400)), sst2.test.subset(range(600))
    attack = PoisonConfig(attack="badnets", target=1, rate=0.1)
    poisoned = poison_training_set(train, attack, np.random.default_rng(0))
    suspect = tiny_classifier(vocab_path, seed=0)
    fit(suspect.model, suspect.tokenizer, poisoned.data, config=TrainConfig(lr=1e-3, epochs=5, max_length=64),
        terms=(cross_entropy_term(),), dev=dev)
    triggered = poisoned_eval_set(test, trigger_inserter(attack), target=1, rng=np.random.default_rng(1))
    untriggered = non_target(test, 1)

    def scores(classifier: Classifier) -> tuple[float, float, float]:
        """CACC, ASR, and the clean flip rate (the floor under ASR), in percent."""

        def run(data: TextDataset) -> np.ndarray:
            return predict(classifier.model, classifier.tokenizer, data.texts, max_length=64)

        return (
            round(clean_accuracy(predictions=run(test), labels=test.labels).percent, 1),
            round(attack_success_rate(predictions=run(triggered), labels=triggered.labels, target=1).percent, 1),
            round(attack_success_rate(predictions=run(untriggered), labels=untriggered.labels, target=1).percent, 1),
        )

    clean = clean_subset(train, 0.2, np.random.default_rng(0))
    inputs = DefenseInputs(suspect=suspect, clean=clean, dev=dev, seed=0)
    retrain = TrainConfig(lr=1e-3, epochs=3, max_length=64)
    config = MbtsadConfig(teacher=AugFtConfig(train=retrain), train=replace(retrain, lr=1e-2))
    result = mbtsad_with_teacher(inputs, config)
    assert result.teacher is not None
    rows = {
        "suspect": scores(suspect),
        "CFT": scores(cft(inputs, CftConfig(train=retrain))),
        "TS-FT": scores(result.teacher),
        "MBTSAD": scores(result.student),
    }
    report = f"(CACC, ASR, clean flip) %: {rows}; {time.perf_counter() - start:.0f} s"
    print(report)
    before, after = rows["suspect"], rows["MBTSAD"]
    assert before[1] > 80, report  # the attack took
    assert after[1] < before[1] - 15, report  # MBTSAD removed much of it (seeds 0-2: 30, 19, 23 points)
    assert after[0] > before[0] - 6, report  # without wrecking clean accuracy
