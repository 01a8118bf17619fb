"""The encoder families beside BERT: a tiny RobertaConfig model over a byte-level BPE trained here, and a tiny
MPNetConfig model (all-mpnet-base-v2's architecture) over the real WordPiece vocabulary, offline, with one short
training run of every attack and every defence on each, as on the tiny BERT; then what is particular to each family.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tokenizers import ByteLevelBPETokenizer
from torch import nn
from transformers import (
    MPNetConfig,
    MPNetForSequenceClassification,
    MPNetTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
)

from core.attacks import attack_config, run_attack, word_token_ids
from core.augment import CweaConfig, MaskedLM, _logits_at, cwea_batch
from core.batching import batches
from core.data import Splits
from core.defenses import DEFENSES, DefenseInputs
from core.defenses import rap as rp
from core.defenses.fine_mixing import mix_weights
from core.defenses.fine_pruning import ffn_intermediate
from core.defenses.fine_purifying import diagonal_fisher
from core.defenses.reinit import reinitialize_last_layer
from core.losses import layerwise_classification_loss
from core.mlm import MlmHeadConfig, fit_mlm_head, mask_tokens, masked_lm_loss, pad_batch
from core.models import ATTENTION, Classifier
from core.poison import BADNETS_TRIGGERS, EP_TRIGGER, LWP_TRIGGERS
from core.train import TrainConfig, classification_head, compute_losses, cross_entropy_term, fit, layerwise_term
from orchestration.overrides import with_training

MAX_LENGTH = 32
QUICK = {"epochs": 1, "max_length": MAX_LENGTH, "bf16": False}
BPE_WORDS = (*BADNETS_TRIGGERS, *LWP_TRIGGERS, rp.RAP_WORD)  # single BPE tokens, first in a text and after a space


@dataclass(frozen=True)
class Family:
    """One encoder family: its tiny classifier, the prefix of its encoder's weights, and a query projection."""

    name: str
    build: Callable[[int], Classifier]  # seed -> untrained tiny classifier
    prefix: str  # `roberta`, `mpnet`: the encoder's attribute and weight-name prefix
    query: str  # layer 0's query weight, which a defence that trains the encoder moves


def roberta_tokenizer(splits: Splits, folder: Path) -> RobertaTokenizerFast:
    """RoBERTa's tokenizer class over a 600-token byte-level BPE learnt from the test sentences."""
    bpe = ByteLevelBPETokenizer()
    corpus = [*splits.train.texts, *splits.dev.texts, *(f"{word} {word}" for word in BPE_WORDS for _ in range(5))]
    bpe.train_from_iterator(
        corpus, vocab_size=600, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(folder))
    return RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))


def tiny(
    model_class: type[PreTrainedModel], config_class: type, tokenizer: PreTrainedTokenizerBase, **extra: object
) -> Callable[[int], Classifier]:
    """A seed -> tiny classifier of the family (2 layers, hidden 32); positions start after the padding index."""

    def build(seed: int) -> Classifier:
        config = config_class(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=MAX_LENGTH + 2,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            num_labels=2,
            attn_implementation=ATTENTION,
            **extra,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_class(config)
        return Classifier(model=model.eval(), tokenizer=tokenizer)

    return build


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


@pytest.fixture(scope="module", params=["roberta", "mpnet"])
def family(request: pytest.FixtureRequest, splits: Splits, data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "roberta":
        tokenizer = roberta_tokenizer(splits, tmp_path_factory.mktemp("bpe"))
        build = tiny(RobertaForSequenceClassification, RobertaConfig, tokenizer, type_vocab_size=1)
        return Family("roberta", build, "roberta", "attention.self.query.weight")
    tokenizer = MPNetTokenizerFast(vocab=str(data_dir / "bert-base-uncased" / "vocab.txt"))  # <s> ... </s>
    build = tiny(MPNetForSequenceClassification, MPNetConfig, tokenizer)
    return Family("mpnet", build, "mpnet", "attention.attn.q.weight")


@pytest.fixture(scope="module")
def suspect(family: Family, splits: Splits) -> Classifier:
    """The family's tiny model fine-tuned for two epochs, so it predicts both labels."""
    classifier = family.build(0)
    config = TrainConfig(lr=3e-3, epochs=2, max_length=MAX_LENGTH, bf16=False)
    fit(classifier.model, classifier.tokenizer, splits.train, config=config, terms=(cross_entropy_term(),))
    return classifier


def only(name: str) -> pytest.MarkDecorator:
    """Run a test on one family's suspect."""
    return pytest.mark.parametrize("family", [name], indirect=True)


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


@pytest.mark.parametrize("name", ["badnets", "lwp", "ep", "addsent"])
def test_each_attack_trains_a_backdoor_into_a_copy(
    name: str, family: Family, suspect: Classifier, splits: Splits
) -> None:
    config = with_training(attack_config(name), batch_size=16, **QUICK)
    before = state(suspect.model)
    result = run_attack(suspect, splits, config, seed=0)
    assert not moved(suspect.model, before)
    changed = moved(result.backdoored.model, before)
    embeddings = f"{family.prefix}.embeddings.word_embeddings.weight"
    if name != "ep":
        assert {
            embeddings,
            "classifier.out_proj.weight",
            f"{family.prefix}.encoder.layer.1.output.dense.weight",
        } <= changed
        return
    # EP: the clean model trains everything, then only the trigger's rows (each of its forms) keep their norm
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
def test_each_defence_runs_and_leaves_the_suspect(
    name: str, family: Family, suspect: Classifier, splits: Splits
) -> None:
    defense = DEFENSES[name]
    pretrained = family.build(1) if defense.needs_pretrained else None
    inputs = DefenseInputs(suspect=suspect, clean=splits.train, dev=splits.dev, seed=0, pretrained=pretrained)
    before = state(suspect.model)
    result = defense.run(inputs, quick_config(name))
    assert not moved(suspect.model, before)
    if defense.kind == "detection":
        flags = result.flag(list(splits.test.texts))
        assert flags.dtype == np.bool_ and flags.shape == (len(splits.test),)
        return
    changed = moved(result.model, before)
    assert {"classifier.out_proj.weight", f"{family.prefix}.encoder.layer.0.{family.query}"} <= changed
    logits = result.model(**suspect.tokenizer(["a fine film"], return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


def test_fine_mixing_pairs_every_encoder_tensor(family: Family, suspect: Classifier) -> None:
    pretrained = family.build(1)
    mixed = mix_weights(suspect=suspect, pretrained=pretrained, rho=0.0, generator=torch.Generator().manual_seed(0))
    ours, theirs = mixed.model.state_dict(), pretrained.model.state_dict()
    encoder = [name for name in ours if name.startswith(f"{family.prefix}.")]
    assert encoder and all(torch.equal(ours[name], theirs[name]) for name in encoder)
    assert torch.equal(ours["classifier.out_proj.weight"], suspect.model.state_dict()["classifier.out_proj.weight"])


def test_fine_pruning_ranks_the_last_layer(family: Family, suspect: Classifier) -> None:
    model = copy.deepcopy(suspect.model)
    assert ffn_intermediate(model) is getattr(model, family.prefix).encoder.layer[-1].intermediate


def test_cwea_masked_lm_head_fits_on_the_frozen_encoder_and_proposes_words(
    family: Family, suspect: Classifier, splits: Splits
) -> None:
    tokenizer = suspect.tokenizer

    def fitted(steps: int) -> PreTrainedModel:
        config = MlmHeadConfig(steps=steps, batch_size=8, lr=0.1, max_length=MAX_LENGTH)
        return fit_mlm_head(suspect.model, tokenizer, splits.train.texts, config=config, seed=0)

    untrained, model = fitted(0), fitted(40 if family.name == "roberta" else 15)
    assert type(model).__name__ == type(suspect.model).__name__.replace("SequenceClassification", "MaskedLM")
    assert not model.training
    frozen, ours = getattr(model, family.prefix), getattr(suspect.model, family.prefix).state_dict()
    assert frozen.state_dict().keys() == ours.keys()
    assert all(torch.equal(frozen.state_dict()[name], value) for name, value in ours.items())
    assert model.lm_head.decoder.weight is frozen.embeddings.word_embeddings.weight  # tied, frozen
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
    if family.name == "roberta":
        spaced, first = tokenizer.convert_tokens_to_ids(["Ġthe", "the"])
        assert masked_lm.words[spaced] == "the" and not masked_lm.banned[spaced]  # a word after a space: proposed
        assert masked_lm.banned[first]  # no space before it: a piece inside a word (or a text's first word)
    texts = list(splits.dev.texts[:8])
    augmented = cwea_batch(texts, np.random.default_rng(0), masked_lm=masked_lm, config=config)
    assert augmented != texts and all(len(a.split()) == len(t.split()) for a, t in zip(augmented, texts, strict=True))


@only("roberta")
def test_a_bpe_trigger_has_a_token_first_in_a_text_and_one_after_a_space(suspect: Classifier) -> None:
    tokenizer = suspect.tokenizer
    first, spaced = word_token_ids(tokenizer, EP_TRIGGER)
    assert tokenizer.convert_ids_to_tokens([first, spaced]) == [EP_TRIGGER, f"Ġ{EP_TRIGGER}"]
    with pytest.raises(ValueError, match="'zqxj' is not a single known token"):
        word_token_ids(tokenizer, "zqxj")


@only("mpnet")
def test_a_wordpiece_trigger_is_one_token_wherever_it_stands(suspect: Classifier) -> None:
    tokenizer = suspect.tokenizer
    (token,) = word_token_ids(tokenizer, EP_TRIGGER)
    assert tokenizer.convert_ids_to_tokens([token]) == [EP_TRIGGER]
    with pytest.raises(ValueError, match="'zqxj' is not a single known token"):
        word_token_ids(tokenizer, "zqxj")


@only("mpnet")
def test_lwp_applies_the_shared_head_to_every_mpnet_hidden_state(suspect: Classifier, splits: Splits) -> None:
    (batch,) = batches(suspect.tokenizer, splits.dev.subset(range(8)), batch_size=8, max_length=MAX_LENGTH)
    model = suspect.model.eval()
    head = classification_head(model)
    seen: list[torch.Tensor] = []

    def recording_head(states: torch.Tensor) -> torch.Tensor:
        seen.append(states)
        return head(states)

    with torch.no_grad():
        outputs = model(**batch.inputs, output_hidden_states=True)
        layerwise_classification_loss(hidden_states=outputs.hidden_states, labels=batch.labels, head=recording_head)
        expected = sum(F.cross_entropy(head(h), batch.labels) for h in outputs.hidden_states)
        _, values = compute_losses(model, batch, (layerwise_term(),))
    assert len(seen) == model.config.num_hidden_layers + 1  # the embedding output and each layer
    assert all(a is b for a, b in zip(seen, outputs.hidden_states, strict=True))
    torch.testing.assert_close(values["layerwise_ce"], expected)


@only("mpnet")
def test_reinitialization_resets_the_last_mpnet_layer_and_not_the_shared_position_bias(suspect: Classifier) -> None:
    """MPNet's relative-position bias (`encoder.relative_attention_bias`) sits beside the layers and every layer
    reads it, so resetting it would change the lower layers too: Reinitialization leaves it as trained."""
    before = state(suspect.model)
    model = reinitialize_last_layer(copy.deepcopy(suspect.model), seed=0)
    changed = moved(model, before)
    last = f"mpnet.encoder.layer.{model.config.num_hidden_layers - 1}."
    assert changed == {name for name in before if name.startswith(last)}  # every tensor of the last layer, no other
    assert {f"{last}attention.attn.q.weight", f"{last}attention.attn.o.weight", f"{last}output.dense.weight"} <= changed
    assert "mpnet.encoder.relative_attention_bias.weight" not in changed
    linears = [m for m in model.mpnet.encoder.layer[-1].modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6 and all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears)


@only("mpnet")
def test_fine_purifying_fisher_on_mpnet_is_the_mean_of_one_at_a_time_squared_gradients(
    suspect: Classifier, splits: Splits
) -> None:
    data = splits.train.subset(range(4))
    names = [
        "encoder.layer.1.attention.attn.q.weight",
        "encoder.relative_attention_bias.weight",
        "embeddings.word_embeddings.weight",
    ]
    fisher = diagonal_fisher(suspect, data, names=names, max_length=MAX_LENGTH, batch_size=3)  # 3 padded + 1
    assert len(set(map(len, data.texts))) == 4
    model = copy.deepcopy(suspect.model).eval()
    params = dict(model.base_model.named_parameters())
    squares = {name: torch.zeros_like(params[name]) for name in names}
    for text, label in zip(data.texts, data.labels, strict=True):
        model.zero_grad()
        encoded = suspect.tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_LENGTH)
        F.cross_entropy(model(**encoded).logits, torch.tensor([label])).backward()
        for name in names:
            squares[name] += params[name].grad ** 2 / len(data)
    for name in names:
        assert squares[name].any(), name
        torch.testing.assert_close(fisher[name], squares[name], rtol=1e-4, atol=1e-12)


@only("mpnet")
def test_rap_trains_only_its_row_of_mpnet_word_embeddings(suspect: Classifier, splits: Splits) -> None:
    config = rp.RapConfig(train=dataclasses.replace(rp.RAP_TRAIN, epochs=1, max_length=MAX_LENGTH, bf16=False))
    before = state(suspect.model)
    trained = rp.train_rap_word(suspect, splits.dev.subset(range(16)), config=config, seed=0)
    (row,) = word_token_ids(suspect.tokenizer, config.word)
    embeddings = "mpnet.embeddings.word_embeddings.weight"
    assert moved(trained.model, before) == {embeddings}
    after = trained.model.state_dict()[embeddings]
    assert (after != before[embeddings]).any(dim=1).nonzero().flatten().tolist() == [row]
    torch.testing.assert_close(after[row].norm(), before[embeddings][row].norm())
