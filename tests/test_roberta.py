"""RoBERTa-family classifiers: a tiny RobertaConfig model over a byte-level BPE trained here, offline, and one
short training run of every attack and every defence on it, as on the tiny BERT."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import RobertaConfig, RobertaForMaskedLM, RobertaForSequenceClassification, RobertaTokenizerFast

from core.attacks import attack_config, run_attack, word_token_ids
from core.augment import CweaConfig, MaskedLM, _logits_at, cwea_batch
from core.batching import batches
from core.data import Splits
from core.defenses import DEFENSES, DefenseInputs
from core.defenses.fine_mixing import mix_weights
from core.defenses.fine_pruning import ffn_intermediate
from core.defenses.rap import RAP_WORD
from core.mlm import MlmHeadConfig, fit_mlm_head, mask_tokens, masked_lm_loss, pad_batch
from core.models import ATTENTION, Classifier
from core.poison import BADNETS_TRIGGERS, EP_TRIGGER, LWP_TRIGGERS
from core.train import TrainConfig, classification_head, cross_entropy_term, fit
from orchestration.overrides import with_training

MAX_LENGTH = 32
QUICK = {"epochs": 1, "max_length": MAX_LENGTH, "bf16": False}
WORDS = (*BADNETS_TRIGGERS, *LWP_TRIGGERS, RAP_WORD)  # single tokens of the BPE, first in a text and after a space


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits(sst2_small: Splits) -> Splits:
    return Splits(
        train=sst2_small.train.subset(range(96)),
        dev=sst2_small.dev.subset(range(64)),
        test=sst2_small.test.subset(range(48)),
    )


@pytest.fixture(scope="module")
def tokenizer(splits: Splits, tmp_path_factory: pytest.TempPathFactory) -> RobertaTokenizerFast:
    """RoBERTa's tokenizer class over a 600-token byte-level BPE learnt from the test sentences."""
    bpe = ByteLevelBPETokenizer()
    corpus = [*splits.train.texts, *splits.dev.texts, *(f"{word} {word}" for word in WORDS for _ in range(5))]
    bpe.train_from_iterator(
        corpus, vocab_size=600, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    folder = tmp_path_factory.mktemp("bpe")
    bpe.save_model(str(folder))
    return RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))


def tiny_roberta(tokenizer: RobertaTokenizerFast, *, seed: int) -> Classifier:
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH + 2,  # RoBERTa's positions start after the padding index
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=2,
        attn_implementation=ATTENTION,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RobertaForSequenceClassification(config)
    return Classifier(model=model.eval(), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def suspect(tokenizer: RobertaTokenizerFast, splits: Splits) -> Classifier:
    """The tiny RoBERTa fine-tuned for two epochs, so it predicts both labels."""
    classifier = tiny_roberta(tokenizer, seed=0)
    config = TrainConfig(lr=3e-3, epochs=2, max_length=MAX_LENGTH, bf16=False)
    fit(classifier.model, tokenizer, splits.train, config=config, terms=(cross_entropy_term(),))
    return classifier


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def moved(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}


def test_batches_carry_no_token_types_and_padding_changes_no_logit(suspect: Classifier, splits: Splits) -> None:
    texts = splits.dev.subset(range(8))
    (batch,) = batches(suspect.tokenizer, texts, batch_size=8, max_length=MAX_LENGTH)
    assert set(batch.inputs) == {"input_ids", "attention_mask"}
    assert batch.inputs["input_ids"][:, 0].eq(suspect.tokenizer.bos_token_id).all()  # <s> where BERT has [CLS]
    with torch.no_grad():
        padded = suspect.model(**batch.inputs).logits
        shortest = int(batch.inputs["attention_mask"].sum(dim=1).argmin())
        alone = suspect.tokenizer(texts.texts[shortest], return_tensors="pt")
        torch.testing.assert_close(suspect.model(**alone).logits[0], padded[shortest])


def test_classification_head_reads_the_first_token_as_the_model_does(suspect: Classifier, splits: Splits) -> None:
    (batch,) = batches(suspect.tokenizer, splits.dev.subset(range(8)), batch_size=8, max_length=MAX_LENGTH)
    with torch.no_grad():
        outputs = suspect.model(**batch.inputs, output_hidden_states=True)
        torch.testing.assert_close(classification_head(suspect.model)(outputs.hidden_states[-1]), outputs.logits)


def test_a_trigger_has_a_token_first_in_a_text_and_one_after_a_space(tokenizer: RobertaTokenizerFast) -> None:
    first, spaced = word_token_ids(tokenizer, EP_TRIGGER)
    assert tokenizer.convert_ids_to_tokens([first, spaced]) == [EP_TRIGGER, f"Ġ{EP_TRIGGER}"]
    with pytest.raises(ValueError, match="'zqxj' is not a single known token"):
        word_token_ids(tokenizer, "zqxj")


@pytest.mark.parametrize("name", ["badnets", "lwp", "ep"])
def test_each_attack_trains_a_backdoor_into_a_copy(name: str, suspect: Classifier, splits: Splits) -> None:
    config = with_training(attack_config(name), batch_size=16, **QUICK)
    before = state(suspect.model)
    result = run_attack(suspect, splits, config, seed=0)
    assert not moved(suspect.model, before)
    changed = moved(result.backdoored.model, before)
    embeddings = "roberta.embeddings.word_embeddings.weight"
    if name != "ep":
        assert {embeddings, "classifier.out_proj.weight", "roberta.encoder.layer.1.output.dense.weight"} <= changed
        return
    # EP: the clean model trains everything, then only the trigger's rows, in both of its forms, keep their norm
    clean = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=1e-12))
    baseline = run_attack(suspect, splits, clean, seed=0).backdoored.model.state_dict()[embeddings]
    after = result.backdoored.model.state_dict()[embeddings]
    rows = (after != baseline).any(dim=1).nonzero().flatten().tolist()
    assert rows == sorted(word_token_ids(suspect.tokenizer, EP_TRIGGER))
    torch.testing.assert_close(after[rows].norm(dim=1), baseline[rows].norm(dim=1))


def quick_config(name: str) -> object:
    """The defence's settings shrunk to one epoch at length 32, with one candidate per ratio search."""
    config = with_training(DEFENSES[name].default_config(), **QUICK)
    names = {f.name for f in dataclasses.fields(config)}
    small = {
        "rho_grid": (0.5,),
        "reset_grid": (0.5,),
        "fisher_samples": 8,
        "max_length": MAX_LENGTH,
        "bf16": False,
        "repeat": 2,
    }
    return dataclasses.replace(config, **{k: v for k, v in small.items() if k in names})


@pytest.mark.parametrize("name", list(DEFENSES))
def test_each_defence_runs_on_roberta_and_leaves_the_suspect(name: str, suspect: Classifier, splits: Splits) -> None:
    defense = DEFENSES[name]
    pretrained = tiny_roberta(suspect.tokenizer, seed=1) if defense.needs_pretrained else None
    inputs = DefenseInputs(suspect=suspect, clean=splits.train, dev=splits.dev, seed=0, pretrained=pretrained)
    before = state(suspect.model)
    result = defense.run(inputs, quick_config(name))
    assert not moved(suspect.model, before)
    if defense.kind == "detection":
        flags = result.flag(list(splits.test.texts))
        assert flags.dtype == np.bool_ and flags.shape == (len(splits.test),)
        return
    changed = moved(result.model, before)
    assert "classifier.out_proj.weight" in changed and "roberta.encoder.layer.0.attention.self.query.weight" in changed
    logits = result.model(**suspect.tokenizer(["a fine film"], return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


def test_fine_mixing_pairs_every_roberta_encoder_tensor(suspect: Classifier) -> None:
    pretrained = tiny_roberta(suspect.tokenizer, seed=1)
    mixed = mix_weights(suspect=suspect, pretrained=pretrained, rho=0.0, generator=torch.Generator().manual_seed(0))
    ours, theirs = mixed.model.state_dict(), pretrained.model.state_dict()
    encoder = [name for name in ours if name.startswith("roberta.")]
    assert encoder and all(torch.equal(ours[name], theirs[name]) for name in encoder)
    assert torch.equal(ours["classifier.out_proj.weight"], suspect.model.state_dict()["classifier.out_proj.weight"])


def test_fine_pruning_ranks_the_last_roberta_layer(suspect: Classifier) -> None:
    model = copy.deepcopy(suspect.model)
    assert ffn_intermediate(model) is model.roberta.encoder.layer[-1].intermediate


def test_cwea_masked_lm_head_fits_on_the_frozen_roberta_and_proposes_whole_words(
    suspect: Classifier, splits: Splits
) -> None:
    tokenizer = suspect.tokenizer

    def fitted(steps: int) -> RobertaForMaskedLM:
        config = MlmHeadConfig(steps=steps, batch_size=8, lr=0.1, max_length=MAX_LENGTH)
        return fit_mlm_head(suspect.model, tokenizer, splits.train.texts, config=config, seed=0)

    untrained, model = fitted(0), fitted(40)
    assert isinstance(model, RobertaForMaskedLM) and not model.training
    encoder = suspect.model.roberta.state_dict()
    assert model.roberta.state_dict().keys() == encoder.keys()
    assert all(torch.equal(model.roberta.state_dict()[name], value) for name, value in encoder.items())
    assert model.lm_head.decoder.weight is model.roberta.embeddings.word_embeddings.weight  # tied, frozen
    rows = tokenizer(list(splits.dev.texts), truncation=True, max_length=MAX_LENGTH)["input_ids"]
    input_ids, attention_mask = pad_batch(rows, pad_token_id=tokenizer.pad_token_id)
    inputs, labels = mask_tokens(
        input_ids,
        maskable=attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids)),
        mask_token_id=tokenizer.mask_token_id,
        vocab_size=len(tokenizer),
        mask_prob=0.15,
        generator=torch.Generator().manual_seed(1),
    )
    with torch.no_grad():
        losses = [
            masked_lm_loss(m, input_ids=inputs, attention_mask=attention_mask, labels=labels).item()
            for m in (untrained, model)
        ]
        assert losses[1] < losses[0] - 0.5, losses
        encoded = dict(tokenizer(["a <mask> film", "the <mask> is fine and <mask>"], padding=True, return_tensors="pt"))
        at = (encoded["input_ids"] == tokenizer.mask_token_id).nonzero()
        full = model(**encoded).logits[at[:, 0], at[:, 1]]
        torch.testing.assert_close(_logits_at(model, encoded, at[:, 0], at[:, 1]), full)
    masked_lm, config = MaskedLM(model, tokenizer), CweaConfig(max_tokens=MAX_LENGTH)
    spaced, first = tokenizer.convert_tokens_to_ids(["Ġthe", "the"])
    assert masked_lm.words[spaced] == "the" and not masked_lm.banned[spaced]  # a word after a space: proposed
    assert masked_lm.banned[first]  # no space before it: a piece inside a word (or a text's first word)
    texts = list(splits.dev.texts[:8])
    augmented = cwea_batch(texts, np.random.default_rng(0), masked_lm=masked_lm, config=config)
    assert augmented != texts and all(len(a.split()) == len(t.split()) for a, t in zip(augmented, texts, strict=True))
