"""Fine-Mixing, E-PUR, Fine-Purifying, STRIP and RAP on a tiny BERT backdoored with real SST-2 rows."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.data import Splits, TextDataset, non_target
from core.defenses import fine_mixing as fm
from core.defenses import fine_purifying as fp
from core.defenses import rap as rp
from core.defenses import strip as st
from core.defenses.base import DefenseInputs
from core.defenses.cft import CftConfig
from core.metrics import Counts
from core.models import Classifier, TinyConfig, tiny_classifier
from core.poison import PoisonConfig, poison_training_set, trigger_inserter
from core.train import TrainConfig, cross_entropy_term, fit

TRIGGER = "cf"
TARGET = 1
SHORT_CFT = CftConfig(train=TrainConfig(lr=1e-3, epochs=1, max_length=32))  # one quick epoch after each reset
ATTACK = PoisonConfig(attack="badnets", triggers=(TRIGGER,), rate=0.1, target=TARGET)


@pytest.fixture(scope="module")
def pretrained(vocab_path) -> Classifier:
    return tiny_classifier(vocab_path, seed=0)


@pytest.fixture(scope="module")
def backdoored(pretrained: Classifier, sst2: Splits) -> Classifier:
    """The tiny model fine-tuned from `pretrained` on 2,000 SST-2 rows, 10% of them carrying "cf" -> 1. Random
    batches: with this seed and rate, length-grouped ones leave the tiny model's backdoor too weak for RAP's check."""
    poisoned = poison_training_set(sst2.train.subset(range(2000)), ATTACK, np.random.default_rng(0))
    model = copy.deepcopy(pretrained.model)
    config = TrainConfig(lr=2e-3, epochs=2, max_length=32, group_by_length=False)
    fit(model, pretrained.tokenizer, poisoned.data, config=config, terms=(cross_entropy_term(),))
    return Classifier(model=model.eval(), tokenizer=pretrained.tokenizer)


@pytest.fixture(scope="module")
def inputs(backdoored: Classifier, pretrained: Classifier, sst2_small: Splits) -> DefenseInputs:
    return DefenseInputs(suspect=backdoored, clean=sst2_small.train, dev=sst2_small.dev, seed=0, pretrained=pretrained)


@pytest.fixture(scope="module")
def triggered_dev(sst2_small: Splits) -> list[str]:
    """Non-target dev sentences with the trigger inserted."""
    insert = trigger_inserter(ATTACK)
    rng = np.random.default_rng(1)
    return [insert(text, rng) for text in non_target(sst2_small.dev, TARGET).texts]


def snapshot(classifier: Classifier) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in classifier.model.state_dict().items()}


def assert_same(classifier: Classifier, saved: dict[str, torch.Tensor]) -> None:
    state = classifier.model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[name], saved[name]) for name in saved)


def weight_pairs(inputs: DefenseInputs, model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name -> (w_ft, w_pre) for each base-model tensor of `model` (the pre-trained tensors)."""
    suspect = dict(inputs.suspect.model.base_model.named_parameters())
    pre = dict(inputs.pretrained.model.base_model.named_parameters())
    return {name: (suspect[name].detach(), pre[name].detach()) for name, _ in model.base_model.named_parameters()}


# ------------------------------------------------------------------------------------------ Fine-Mixing


def test_mix_weights_keeps_a_rho_share_at_the_backdoored_value(inputs: DefenseInputs) -> None:
    saved = snapshot(inputs.suspect)
    rho = 0.3
    mixed = fm.mix_weights(
        suspect=inputs.suspect, pretrained=inputs.pretrained, rho=rho, generator=torch.Generator().manual_seed(0)
    )
    params = dict(mixed.model.base_model.named_parameters())
    checked = 0
    for name, (w_ft, w_pre) in weight_pairs(inputs, mixed.model).items():
        w = params[name].detach()
        moved = w_ft != w_pre
        kept = (w == w_ft) & moved
        # every scalar holds exactly one of the two values; where they differ, a share rho is backdoored
        assert torch.equal(torch.where(kept, w_ft, w_pre), w), name
        if moved.sum() >= 2000:
            assert abs(kept.sum().item() / moved.sum().item() - rho) < 0.05, name
            checked += 1
    assert checked >= 5
    assert torch.equal(mixed.model.classifier.weight, inputs.suspect.model.classifier.weight)  # the head stays
    assert torch.equal(mixed.model.classifier.bias, inputs.suspect.model.classifier.bias)
    again = fm.mix_weights(
        suspect=inputs.suspect, pretrained=inputs.pretrained, rho=rho, generator=torch.Generator().manual_seed(0)
    )
    assert_same(again, snapshot(mixed))  # the seed fixes the mask
    assert_same(inputs.suspect, saved)


def test_mix_weights_largest_keeps_the_largest_drifts(inputs: DefenseInputs) -> None:
    mixed = fm.mix_weights(
        suspect=inputs.suspect,
        pretrained=inputs.pretrained,
        rho=0.2,
        generator=torch.Generator().manual_seed(0),
        mode="largest",
    )
    params = dict(mixed.model.base_model.named_parameters())
    for name, (w_ft, w_pre) in weight_pairs(inputs, mixed.model).items():
        drift = (w_ft - w_pre).abs().flatten()
        kept = (params[name].detach() == w_ft).flatten() & (drift > 0)
        reset = ~kept & (drift > 0)
        if kept.any() and reset.any():
            assert drift[kept].min() >= drift[reset].max(), name
        assert kept.sum() <= round(0.2 * drift.numel())


def test_defenses_without_matching_pretrained_weights_fail_clearly(inputs: DefenseInputs, vocab_path) -> None:
    missing = replace(inputs, pretrained=None)
    with pytest.raises(ValueError, match="Fine-Mixing needs the pre-trained weights"):
        fm.fine_mixing(missing, fm.FineMixingConfig(cft=SHORT_CFT))
    with pytest.raises(ValueError, match="Fine-Purifying needs the pre-trained weights"):
        fp.fine_purifying(missing, fp.FinePurifyingConfig(cft=SHORT_CFT))
    narrow = tiny_classifier(vocab_path, seed=0, config=TinyConfig(hidden_size=16))
    wrong = replace(inputs, pretrained=narrow)
    with pytest.raises(ValueError, match="Fine-Mixing: .* differ in shape"):
        fm.fine_mixing(wrong, fm.FineMixingConfig(cft=SHORT_CFT))
    with pytest.raises(ValueError, match="Fine-Purifying: .* differ in shape"):
        fp.fine_purifying(wrong, fp.FinePurifyingConfig(cft=SHORT_CFT))
    assert fm.DEFENSE.needs_pretrained and fp.DEFENSE.needs_pretrained


def test_epur_resets_exactly_the_top_rows(inputs: DefenseInputs) -> None:
    rows, floor = 50, 20.0
    chosen = fm.epur_rows(
        suspect=inputs.suspect, pretrained=inputs.pretrained, texts=inputs.clean.texts, rows=rows, min_count=floor
    )
    # the score computed directly: drift norm over log(max(frequency in D_c, c))
    tokenizer = inputs.suspect.tokenizer
    counts = Counter(i for text in inputs.clean.texts for i in tokenizer(text, add_special_tokens=False)["input_ids"])
    e_ft = inputs.suspect.model.get_input_embeddings().weight.detach()
    e_pre = inputs.pretrained.model.get_input_embeddings().weight.detach()
    frequency = torch.tensor([max(counts.get(i, 0), floor) for i in range(e_ft.shape[0])], dtype=torch.float32)
    scores = (e_ft - e_pre).norm(dim=1) / frequency.log()
    assert set(chosen.tolist()) == set(torch.argsort(scores, descending=True)[:rows].tolist())
    assert tokenizer.convert_tokens_to_ids(TRIGGER) in chosen.tolist()  # the trigger's row moved, yet it is rare

    purified = fm.reset_rows(inputs.suspect, inputs.pretrained, chosen)
    e_new = purified.model.get_input_embeddings().weight.detach()
    reset = torch.zeros(e_ft.shape[0], dtype=torch.bool)
    reset[chosen] = True
    assert torch.equal(e_new[reset], e_pre[reset])
    assert torch.equal(e_new[~reset], e_ft[~reset])


def test_fine_mixing_runs_end_to_end_and_stops_at_the_first_rho_within_tolerance(inputs: DefenseInputs) -> None:
    saved, saved_pre = snapshot(inputs.suspect), snapshot(inputs.pretrained)
    lenient = fm.FineMixingConfig(rho_grid=(0.6, 0.2), tolerance=100.0, epur=True, epur_rows=20, cft=SHORT_CFT)
    choice = fm.fine_mixing_search(inputs, lenient)
    assert choice.ratio == 0.2 and [r for r, _ in choice.tried] == [0.2]  # smallest first, and it qualifies
    assert choice.suspect_dev.seen == len(inputs.dev) == choice.tried[0][1].seen
    assert choice.classifier.model is not inputs.suspect.model
    assert_same(inputs.suspect, saved)
    assert_same(inputs.pretrained, saved_pre)


def test_ratio_rule_takes_the_first_within_tolerance_else_the_most_accurate(
    inputs: DefenseInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean-dev rule alone, with CFT replaced by a stand-in whose dev accuracy is set per ratio."""
    accuracy = {"suspect": 80, 0.1: 70, 0.2: 77, 0.3: 79, 0.4: 75}
    models = {ratio: Classifier(model=torch.nn.Linear(1, 1), tokenizer=None) for ratio in accuracy}
    identity = {id(m): key for key, m in models.items()}
    identity[id(inputs.suspect)] = "suspect"
    monkeypatch.setattr(fm, "clean_finetune", lambda classifier, *args, **kwargs: classifier)
    monkeypatch.setattr(fm, "dev_accuracy", lambda c, dev, config: Counts(accuracy[identity[id(c)]], 100))

    def choose(candidates: tuple[float, ...], tolerance: float) -> fm.RatioChoice:
        return fm.choose_ratio(
            candidates=candidates, build=models.__getitem__, inputs=inputs, tolerance=tolerance, cft=SHORT_CFT
        )

    choice = choose((0.1, 0.2, 0.3, 0.4), 5.0)  # 0.1 loses 10 points, 0.2 loses 3: within 5
    assert choice.ratio == 0.2 and [r for r, _ in choice.tried] == [0.1, 0.2]
    assert choice.classifier is models[0.2] and choice.suspect_dev == Counts(80, 100)
    choice = choose((0.1, 0.2, 0.3, 0.4), 0.5)  # none within half a point: the most accurate
    assert choice.ratio == 0.3 and len(choice.tried) == 4 and choice.classifier is models[0.3]
    with pytest.raises(ValueError, match="tolerance >= 0"):
        fm.FineMixingConfig(tolerance=-1.0)


# --------------------------------------------------------------------------------------- Fine-Purifying


def test_indicator_and_reset_masks_by_hand() -> None:
    indicator = fp.purifying_indicator(
        drift=torch.tensor([1.0, -2.0, 0.5, 0.0]), fisher=torch.tensor([1.0, 3.0, 0.0, 0.0]), eps=0.25
    )
    assert torch.allclose(indicator, torch.tensor([0.8, 4 / 3.25, 1.0, 0.0]))
    indicators = {"a": torch.tensor([[5.0, 1.0], [0.0, 3.0]]), "b": torch.tensor([4.0, 2.0])}
    masks = fp.reset_masks(indicators, fraction=0.5, scope="global")  # top 3 of 6: 5, 4, 3
    assert masks["a"].tolist() == [[True, False], [False, True]] and masks["b"].tolist() == [True, False]
    masks = fp.reset_masks(indicators, fraction=0.5, scope="tensor")  # top 2 of a, top 1 of b
    assert masks["a"].tolist() == [[True, False], [False, True]] and masks["b"].tolist() == [True, False]
    masks = fp.reset_masks(indicators, fraction=0.25, scope="tensor")
    assert masks["a"].tolist() == [[True, False], [False, False]] and masks["b"].tolist() == [False, False]


def test_batched_diagonal_fisher_is_the_mean_of_one_at_a_time_squared_gradients(inputs: DefenseInputs) -> None:
    data = inputs.clean.subset(range(4))
    names = ["encoder.layer.1.output.dense.weight", "embeddings.word_embeddings.weight"]
    fisher = fp.diagonal_fisher(inputs.suspect, data, names=names, max_length=32, batch_size=3)  # padded, 3 + 1
    assert len(set(map(len, data.texts))) == 4  # texts of different lengths: the batch of 3 pads two of them
    model = copy.deepcopy(inputs.suspect.model).eval()
    params = dict(model.base_model.named_parameters())
    squares = {name: torch.zeros_like(params[name]) for name in names}
    mean_grad = {name: torch.zeros_like(params[name]) for name in names}
    for text, label in zip(data.texts, data.labels, strict=True):
        model.zero_grad()
        encoded = inputs.suspect.tokenizer(text, return_tensors="pt", truncation=True, max_length=32)
        F.cross_entropy(model(**encoded).logits, torch.tensor([label])).backward()
        for name in names:
            squares[name] += params[name].grad ** 2 / len(data)
            mean_grad[name] += params[name].grad / len(data)
    for name in names:
        assert torch.allclose(fisher[name], squares[name], rtol=1e-4, atol=1e-12), name
        # per-example squares, not the square of the batch gradient
        assert (fisher[name] > mean_grad[name] ** 2 * (1 + 1e-3) + 1e-12).any(), name


def test_fine_purifying_resets_exactly_the_top_fraction_by_indicator(inputs: DefenseInputs) -> None:
    saved = snapshot(inputs.suspect)
    config = fp.FinePurifyingConfig(reset_fraction=0.3, fisher_samples=32, cft=SHORT_CFT)
    indicators = fp.purifying_indicators(inputs, config, inputs.pretrained)
    masks = fp.reset_masks(indicators, fraction=0.3, scope="global")
    purified = fp.purify_weights(suspect=inputs.suspect, pretrained=inputs.pretrained, masks=masks)
    params = dict(purified.model.base_model.named_parameters())
    total = sum(v.numel() for v in indicators.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.3 * total)
    inside = torch.cat([indicators[n][masks[n]] for n in masks])
    outside = torch.cat([indicators[n][~masks[n]] for n in masks])
    assert inside.min() >= outside.max()
    for name, (w_ft, w_pre) in weight_pairs(inputs, purified.model).items():
        w = params[name].detach()
        assert torch.equal(w[masks[name]], w_pre[masks[name]]), name
        assert torch.equal(w[~masks[name]], w_ft[~masks[name]]), name
    assert torch.equal(purified.model.classifier.weight, inputs.suspect.model.classifier.weight)

    choice = fp.fine_purifying_search(inputs, config)  # the fixed fraction: one CFT, no search
    assert choice.ratio == 0.3 and len(choice.tried) == 1
    assert_same(inputs.suspect, saved)


# ------------------------------------------------------------------------------------------------ STRIP


def test_strip_perturbation_replaces_a_share_of_words_with_pool_words() -> None:
    pool = (("superb", "moving"), ("dull",))
    text = "one two three four five six seven eight"
    out = st.perturb(text, pool=pool, swap_ratio=0.5, rng=np.random.default_rng(0))
    changed = [new for old, new in zip(text.split(), out.split(), strict=True) if old != new]
    assert len(changed) == 4 and set(changed) <= {"superb", "moving", "dull"}
    assert st.perturb("single", pool=pool, swap_ratio=0.5, rng=np.random.default_rng(0)) == "single"


def test_strip_threshold_gives_the_configured_frr_and_flags_triggered_inputs(
    inputs: DefenseInputs, triggered_dev: list[str]
) -> None:
    saved = snapshot(inputs.suspect)
    detector = st.strip(inputs, st.StripConfig(frr=0.1, max_length=32))
    clean_flags = detector.flag(inputs.dev.texts)
    assert abs(clean_flags.mean() - 0.1) <= 0.03
    assert np.array_equal(detector.flag(inputs.dev.texts[::-1]), clean_flags[::-1])  # order-independent
    assert detector.flag(triggered_dev).mean() > clean_flags.mean() + 0.05
    assert_same(inputs.suspect, saved)


# -------------------------------------------------------------------------------------------------- RAP


def test_rap_learns_only_its_row_and_calibrates_the_frr(inputs: DefenseInputs, triggered_dev: list[str]) -> None:
    saved = snapshot(inputs.suspect)
    config = rp.RapConfig(frr=0.1, target=TARGET, train=replace(rp.RAP_TRAIN, max_length=32))
    detector = rp.rap(inputs, config)
    assert_same(inputs.suspect, saved)

    row = rp.word_token_id(inputs.suspect, config.word)
    learned = detector.classifier.model.state_dict()
    embeddings = "bert.embeddings.word_embeddings.weight"
    for name, value in saved.items():
        if name != embeddings:
            assert torch.equal(learned[name], value), name
    changed = (learned[embeddings] != saved[embeddings]).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [row]
    assert torch.allclose(learned[embeddings][row].norm(), saved[embeddings][row].norm())  # rescaled

    target_dev = inputs.dev.subset([i for i, y in enumerate(inputs.dev.labels) if y == TARGET])
    original, _ = rp.probabilities_with_word(detector.classifier, target_dev.texts, config=config)
    predicted = original.argmax(axis=1) == TARGET
    assert abs(detector.flag(target_dev.texts)[predicted].mean() - 0.1) <= 0.03
    assert not detector.flag(target_dev.texts)[~predicted].any()  # only target predictions can be rejected
    assert detector.flag(triggered_dev).mean() > 0.3


def test_rap_word_must_be_one_known_token(inputs: DefenseInputs) -> None:
    assert rp.word_token_id(inputs.suspect, "mb") == inputs.suspect.tokenizer.convert_tokens_to_ids("mb")
    with pytest.raises(ValueError, match="not a single known token"):
        rp.word_token_id(inputs.suspect, "qzxvbnm")
    with pytest.raises(ValueError, match="no samples of the target label"):
        rp.rap(replace(inputs, dev=TextDataset(("bad",), (0,))), rp.RapConfig())
