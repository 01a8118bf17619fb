"""Augmentations on real SST-2 sentences: counts, positions, byte-exactness, determinism, no global RNG."""

from __future__ import annotations

import math
import random
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

from core.augment import (
    AEDA_PUNCTUATION,
    AUGMENTATIONS,
    STOPWORDS,
    CweaConfig,
    MaskedLM,
    TokenSplitConfig,
    _logits_at,
    add_trigger,
    aeda,
    augment_dataset,
    augmented_word_count,
    cwea,
    cwea_batch,
    eda,
    get_augmentation,
    insert_word,
    load_wordnet,
    token_split,
    token_split_copies,
    wordnet_data_dir,
)
from core.data import TextDataset
from core.mlm import MlmHeadConfig, fit_mlm_head, mask_tokens, masked_lm_loss, pad_batch


@pytest.fixture(scope="module")
def sentences(data_dir: Path) -> list[str]:
    """The first 1,000 OpenBackdoor SST-2 training sentences, read straight from the file."""
    lines = (data_dir / "sst2" / "openbackdoor" / "train.tsv").read_bytes().decode().split("\r\n")
    assert lines[0] == "sentence\tlabel"
    return [line.rsplit("\t", 1)[0] for line in lines[1:1001]]


@pytest.fixture(scope="module")
def tokenizer(vocab_path: Path) -> BertTokenizerFast:
    return BertTokenizerFast(vocab=str(vocab_path))


@pytest.fixture(scope="module")
def tiny_mlm(tokenizer: BertTokenizerFast) -> BertForMaskedLM:
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BertForMaskedLM(config).eval()


def nlpaug_tokens(text: str) -> list[str]:
    """nlpaug's own word tokeniser (Tokenizer.tokenizer), the reference for n."""
    return [t for t in re.split(r"(\W)", text) if t.strip()]


def inserted_spaces(original: str, augmented: str) -> list[int]:
    """Offsets in `original` before which `augmented` has an extra space; fails on any other change."""
    offsets, i = [], 0
    for char in augmented:
        if i < len(original) and char == original[i]:
            i += 1
        else:
            assert char == " ", f"{augmented!r} changes {original!r} at {i}"
            offsets.append(i)
    assert i == len(original), f"{augmented!r} drops the end of {original!r}"
    return offsets


def word_around(text: str, offset: int) -> tuple[int, int]:
    """The maximal run of word characters containing text[offset - 1] and text[offset]."""
    start, end = offset, offset
    while start > 0 and re.match(r"\w", text[start - 1]):
        start -= 1
    while end < len(text) and re.match(r"\w", text[end]):
        end += 1
    return start, end


def swapped_words(before: str, after: str) -> list[tuple[str, str]]:
    """The (old, new) token pairs where `after` differs from `before`; fails if any gap between tokens changed."""
    old, new = re.split(r"(\w+|[^\w\s])", before), re.split(r"(\w+|[^\w\s])", after)
    assert old[0::2] == new[0::2], (before, after)
    return [(a, b) for a, b in zip(old[1::2], new[1::2], strict=True) if a != b]


# ------------------------------------------------------------------------------------- token split


def test_augmented_word_count_by_hand() -> None:
    count = partial(augmented_word_count, fraction=0.3, minimum=1, maximum=10)
    assert count(0, 0, mode="nlpaug") == 0
    assert count(1, 1, mode="nlpaug") == 1  # ceil(0.3) = 1
    assert count(10, 8, mode="nlpaug") == 3  # ceil(3.0) = 3
    assert count(11, 8, mode="nlpaug") == 4  # ceil(3.3) = 4
    assert count(40, 30, mode="nlpaug") == 10  # capped at 10
    assert count(40, 2, mode="nlpaug") == 2  # capped by the eligible words
    assert count(5, 4, mode="paper") == 4  # max(10, 2) = 10, only 4 eligible
    assert count(50, 30, mode="paper") == 15  # max(10, 15)
    with pytest.raises(ValueError, match="nlpaug, paper"):
        count(5, 4, mode="papers")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["nlpaug", "paper"])
def test_token_split_counts_positions_and_bytes(sentences: list[str], mode: str) -> None:
    rng = np.random.default_rng(1)
    for sentence in sentences:
        augmented = token_split(sentence, rng, count=mode)
        offsets = inserted_spaces(sentence, augmented)  # also: only spaces were inserted
        tokens = nlpaug_tokens(sentence)
        n_eligible = sum(t.isalpha() and len(t) >= 4 and t not in STOPWORDS for t in tokens)
        wanted = (
            min(10, max(1, math.ceil(0.3 * len(tokens)))) if mode == "nlpaug" else max(10, math.ceil(0.3 * len(tokens)))
        )
        assert len(offsets) == min(wanted, n_eligible), sentence
        words = [word_around(sentence, offset) for offset in offsets]
        assert len(set(words)) == len(words), "a word was split twice"
        for offset, (start, end) in zip(offsets, words, strict=True):
            word = sentence[start:end]
            assert word.isalpha() and len(word) >= 4 and word not in STOPWORDS
            assert offset - start >= 1 and end - offset >= 2  # first piece >= 1 char, second >= 2
            assert augmented.count(f"{word[: offset - start]} {word[offset - start :]}") >= 1


@pytest.mark.parametrize(
    ("text", "eligible"),
    [  # a Unicode text, and an ASCII one (its own fast path) with the separators str counts as space
        ('  Café\tdéjà-vu!!  "Wonderful"\u00a0— 1930s   movies’ charming_x42 extraordinary\r\n', 5),
        ("\x1cPlain\x1fwords\x0bwith  TABS\tand, 'quoted' punctuation!! 2nd_take  \r\n", 5),
    ],
)
def test_token_split_keeps_odd_whitespace_byte_for_byte(text: str, eligible: int) -> None:
    tokens = nlpaug_tokens(text)
    assert sum(t.isalpha() and len(t) >= 4 and t.lower() not in STOPWORDS for t in tokens) == eligible
    for seed in range(50):
        for mode in ("paper", "nlpaug"):
            offsets = inserted_spaces(text, token_split(text, np.random.default_rng(seed), count=mode))
            wanted = max(10, math.ceil(0.3 * len(tokens))) if mode == "paper" else math.ceil(0.3 * len(tokens))
            assert len(offsets) == min(wanted, eligible)
            assert all(text[s:e].isalpha() and e - s >= 4 for s, e in map(partial(word_around, text), offsets))


def test_stopwords_and_short_words_are_never_split() -> None:
    text = "there which about those into cat, were these this 1990s_ok abc should"
    for seed in range(200):
        assert token_split(text, np.random.default_rng(seed), count="paper") == text
    assert token_split("", np.random.default_rng(0)) == ""
    with pytest.raises(ValueError, match="min_chars must be >= 3"):
        TokenSplitConfig(min_chars=2)
    custom = TokenSplitConfig(stopwords=frozenset(), min_chars=5)  # "there" now eligible, "film" too short
    for seed in range(20):
        offsets = inserted_spaces("there film", token_split("there film", np.random.default_rng(seed), config=custom))
        assert len(offsets) == 1 and 1 <= offsets[0] <= 3


def test_split_position_is_uniform_over_its_range() -> None:
    cuts = [inserted_spaces("wonderful", token_split("wonderful", np.random.default_rng(s)))[0] for s in range(700)]
    counts = np.bincount(cuts, minlength=9)
    assert counts[0] == 0 and counts[8] == 0  # never before the first or after the second-to-last char
    assert (counts[1:8] > 60).all()  # 7 positions, 100 expected each


def test_token_split_is_seed_deterministic(sentences: list[str]) -> None:
    first = [token_split(s, np.random.default_rng(7)) for s in sentences[:200]]
    again = [token_split(s, np.random.default_rng(7)) for s in sentences[:200]]
    other = [token_split(s, np.random.default_rng(8)) for s in sentences[:200]]
    assert first == again
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 150


# ---------------------------------------------------------------------------------- EDA, AEDA, trig


@pytest.fixture(scope="module")
def wordnet(data_dir: Path):
    return load_wordnet(data_dir)


def is_subsequence(short: list[str], long: list[str]) -> bool:
    remaining = iter(long)
    return all(word in remaining for word in short)


def test_eda_applies_one_of_its_four_operations(sentences: list[str], wordnet) -> None:
    rng = np.random.default_rng(3)
    kinds = set()
    for sentence in sentences[:120]:
        words, out = sentence.split(), eda(sentence, rng, wordnet=wordnet).split()
        if sorted(out) == sorted(words):
            kinds.add("swap")
        elif len(out) < len(words) and is_subsequence(out, words):
            kinds.add("delete")
        elif is_subsequence(words, out):
            kinds.add("insert")
        else:  # replacement: every original word that disappeared is a non-stop-word
            gone = set(words) - set(out)
            assert gone and all(w.isalpha() and w not in STOPWORDS for w in gone), (sentence, out)
            kinds.add("replace")
    assert kinds == {"swap", "delete", "insert", "replace"}
    first = [eda(s, np.random.default_rng(5), wordnet=wordnet) for s in sentences[:30]]
    assert first == [eda(s, np.random.default_rng(5), wordnet=wordnet) for s in sentences[:30]]


def test_wordnet_folder_resolution(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nltk_data = (data_dir / "wordnet" / "nltk_data").resolve()
    assert wordnet_data_dir(data_dir) == nltk_data
    with pytest.raises(FileNotFoundError, match="corpora/wordnet"):
        wordnet_data_dir(tmp_path)
    monkeypatch.delenv("MBTSAD_DATA", raising=False)
    monkeypatch.setenv("NLTK_DATA", f"{tmp_path}:{nltk_data}")  # the first entry holding WordNet wins
    assert wordnet_data_dir() == nltk_data
    monkeypatch.setenv("MBTSAD_DATA", str(tmp_path))  # the project's variable comes first, and must hold it
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        wordnet_data_dir()


def test_aeda_inserts_only_punctuation_within_the_count_range(sentences: list[str]) -> None:
    rng = np.random.default_rng(4)
    seen_q = set()
    for sentence in sentences[:300]:
        words, out = sentence.split(), aeda(sentence, rng).split()
        kept, extra, i = [], [], 0
        for token in out:
            if i < len(words) and token == words[i]:
                kept.append(token)
                i += 1
            else:
                extra.append(token)
        assert " ".join(kept) == sentence and all(t in AEDA_PUNCTUATION for t in extra)
        assert 1 <= len(extra) <= int(0.3 * len(words) + 1)
        seen_q.add(len(extra))
    assert {1, 2, 3} <= seen_q


def test_insert_word_by_hand() -> None:
    assert [insert_word("a  b", "X", p) for p in range(3)] == ["X a  b", "a  X b", "a  b X"]
    assert insert_word("a b\r\n", "X", 2) == "a b X\r\n"
    assert insert_word("", "X", 0) == "X"
    with pytest.raises(ValueError, match="outside 0..2"):
        insert_word("a b", "X", 3)


def test_add_trigger_inserts_one_trigger_anywhere(sentences: list[str]) -> None:
    rng = np.random.default_rng(6)
    positions = set()
    for sentence in sentences[:200]:
        words, out = sentence.split(), add_trigger(sentence, rng).split()
        assert len(out) == len(words) + 1 and out.count("cb") == words.count("cb") + 1
        position = next(i for i, (a, b) in enumerate(zip(out, [*words, None], strict=True)) if a != b)
        assert out[:position] + out[position + 1 :] == words and out[position] == "cb"
        positions.add("start" if position == 0 else "end" if position == len(words) else "inside")
    assert positions == {"start", "inside", "end"}
    triggers = ("cf", "mn", "bb", "tq")
    drawn = [add_trigger("x", np.random.default_rng(s), trigger=triggers).split() for s in range(40)]
    assert all(len(out) == 2 and "x" in out for out in drawn)
    assert {w for out in drawn for w in out} == {"x", *triggers}


# -------------------------------------------------------------------------------------------- CWEA


def test_cwea_substitutes_words_deterministically(sentences: list[str], tiny_mlm, tokenizer) -> None:
    masked_lm = MaskedLM(tiny_mlm, tokenizer)
    changed = 0
    for i, sentence in enumerate(sentences[:8]):
        out = cwea(sentence, np.random.default_rng(0), masked_lm=masked_lm)
        if i < 3:
            assert out == cwea(sentence, np.random.default_rng(0), masked_lm=masked_lm)
        swapped = swapped_words(sentence, out)  # also: the gaps between tokens are untouched
        assert all(a.isalpha() and b.isalpha() for a, b in swapped)
        assert len(swapped) <= min(10, max(1, math.ceil(0.3 * len(re.findall(r"\w+|[^\w\s]", sentence)))))
        changed += bool(swapped)
    assert changed >= 6
    assert cwea(sentences[0], np.random.default_rng(1), masked_lm=masked_lm) != cwea(
        sentences[0], np.random.default_rng(2), masked_lm=masked_lm
    )


def test_cwea_batch_is_seeded_and_independent_of_batch_size(sentences: list[str], tiny_mlm, tokenizer) -> None:
    masked_lm = MaskedLM(tiny_mlm, tokenizer)
    texts = [*sentences[:20], "", "... !!", sentences[0]]  # nothing to replace in two; a repeat gets its own seed
    outputs = {
        size: cwea_batch(texts, np.random.default_rng(3), masked_lm=masked_lm, batch_size=size) for size in (1, 3, 64)
    }
    assert outputs[1] == outputs[3] == outputs[64]
    out = outputs[64]
    assert out[20:22] == ["", "... !!"] and out[22] != out[0]
    assert cwea_batch(texts, np.random.default_rng(3), masked_lm=masked_lm) == out
    other = cwea_batch(texts, np.random.default_rng(4), masked_lm=masked_lm)
    assert sum(a != b for a, b in zip(out[:20], other[:20], strict=True)) >= 15
    changed = 0
    for before, after in zip(texts, out, strict=True):
        swapped = swapped_words(before, after)
        assert all(a.isalpha() and b.isalpha() and a.lower() != b.lower() for a, b in swapped)
        n_tokens = len(re.findall(r"\w+|[^\w\s]", before))
        assert len(swapped) <= min(10, max(1, math.ceil(0.3 * n_tokens)))
        changed += bool(swapped)
    assert changed >= 18
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        cwea_batch(texts, np.random.default_rng(3), masked_lm=masked_lm, batch_size=0)


def test_cwea_batch_equals_successive_cwea_calls(sentences: list[str], tiny_mlm, tokenizer) -> None:
    masked_lm = MaskedLM(tiny_mlm, tokenizer)
    shared = np.random.default_rng(5)
    one_by_one = [cwea(text, shared, masked_lm=masked_lm) for text in sentences[:12]]
    rng = np.random.default_rng(5)
    assert cwea_batch(sentences[:12], rng, masked_lm=masked_lm, batch_size=5) == one_by_one
    assert rng.random() == shared.random()  # one draw per text from the shared generator either way


def test_cwea_batch_leaves_words_beyond_the_token_limit(sentences: list[str], tiny_mlm, tokenizer) -> None:
    masked_lm = MaskedLM(tiny_mlm, tokenizer)
    config = CweaConfig(fraction=1.0, maximum=40, max_tokens=6)  # [CLS] + 4 pieces + [SEP]: later masks are cut
    texts = ["fine", *sentences[:10]]
    out = {
        size: cwea_batch(texts, np.random.default_rng(6), masked_lm=masked_lm, config=config, batch_size=size)
        for size in (1, 4)
    }
    assert out[1] == out[4]  # a batch mixes rows that lost their mask with rows that kept it
    for before, after in zip(texts, out[4], strict=True):
        pieces = re.split(r"(\w+|[^\w\s])", after)  # left of a word, the output is what its mask saw
        for i, (a, b) in enumerate(zip(re.split(r"(\w+|[^\w\s])", before)[1::2], pieces[1::2], strict=True)):
            if a != b:  # the masked word's left context fits in the 4 pieces the limit leaves
                assert len(tokenizer("".join(pieces[: 2 * i + 1]), add_special_tokens=False)["input_ids"]) < 4
    assert out[4][0] != "fine" and sum(a != b for a, b in zip(texts[1:], out[4][1:], strict=True)) >= 8


def test_logits_at_the_mask_equal_the_full_forward_pass(sentences: list[str], tiny_mlm, tokenizer) -> None:
    inputs = dict(tokenizer(sentences[:6], padding=True, return_tensors="pt"))
    rows, cols = torch.tensor([0, 2, 5, 5]), torch.tensor([1, 3, 2, 4])
    with torch.no_grad():
        full = tiny_mlm(**inputs).logits[rows, cols]
        assert torch.allclose(_logits_at(tiny_mlm, inputs, rows, cols), full, atol=1e-5)


# ---------------------------------------------------------------------------------------- MLM head


def test_mask_tokens_follows_bert_masking() -> None:
    ids = torch.arange(1000, 1000 + 40 * 50).reshape(40, 50)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :2] = False
    maskable[0] = False
    maskable[1, 10] = True  # a row with a single maskable token: it is always chosen
    maskable[1, 11:] = False
    inputs, labels = mask_tokens(
        ids,
        maskable=maskable,
        mask_token_id=103,
        vocab_size=30522,
        mask_prob=0.15,
        generator=torch.Generator().manual_seed(0),
    )
    chosen = labels != -100
    assert not (chosen & ~maskable).any() and not chosen[0].any() and chosen[1].tolist().count(True) == 1
    assert (labels[chosen] == ids[chosen]).all() and (inputs[~chosen] == ids[~chosen]).all()
    assert 0.12 < chosen[2:].float().mean() < 0.18
    assert 0.7 < (inputs[chosen] == 103).float().mean() < 0.9


def test_fit_mlm_head_lowers_the_loss_and_freezes_the_encoder(sentences: list[str], tokenizer) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = BertModel(
            BertConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
            )
        )
    original = {k: v.clone() for k, v in encoder.state_dict().items()}
    rows = tokenizer(sentences[900:964], truncation=True, max_length=32)["input_ids"]
    input_ids, attention_mask = pad_batch(rows, pad_token_id=tokenizer.pad_token_id)
    inputs, labels = mask_tokens(
        input_ids,
        maskable=attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids)),
        mask_token_id=tokenizer.mask_token_id,
        vocab_size=len(tokenizer),
        mask_prob=0.15,
        generator=torch.Generator().manual_seed(1),
    )

    def loss(steps: int) -> tuple[BertForMaskedLM, float]:
        config = MlmHeadConfig(steps=steps, batch_size=8, lr=0.1, max_length=32)
        model = fit_mlm_head(encoder, tokenizer, sentences[:800], config=config, seed=0)
        with torch.no_grad():
            value = masked_lm_loss(model, input_ids=inputs, attention_mask=attention_mask, labels=labels).item()
        return model, value

    torch_state = torch.get_rng_state()
    _, before = loss(0)
    fitted, after = loss(20)
    assert after < before - 0.5, (before, after)
    assert torch.equal(torch.get_rng_state(), torch_state)
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, original[name]), f"source encoder changed: {name}"
        if not name.startswith("pooler."):
            assert torch.equal(fitted.bert.state_dict()[name], value), f"fitted encoder moved: {name}"
    assert not any(p.requires_grad for p in fitted.bert.parameters()) and not fitted.training


@pytest.mark.parametrize(
    ("model_type", "sizes"),
    [
        ("distilbert", {"dim": 32, "hidden_dim": 64, "n_layers": 1, "n_heads": 2}),
        ("gpt2", {"n_embd": 32, "n_layer": 1, "n_head": 2, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}),
    ],
)
def test_fit_mlm_head_refuses_a_model_type_without_a_known_head(
    model_type: str, sizes: dict, tokenizer, tmp_path: Path
) -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), num_labels=2, **sizes)
    classifier = AutoModelForSequenceClassification.from_config(config)
    classifier.save_pretrained(tmp_path)
    refused = f"CWEA's masked-LM head: model type '{model_type}' \\({{}}\\) is not supported; supported: bert, roberta"
    for encoder, named in ((classifier, type(classifier).__name__), (tmp_path, re.escape(str(tmp_path)))):
        with pytest.raises(ValueError, match=refused.format(named)):
            fit_mlm_head(encoder, tokenizer, ["a fine film"], config=MlmHeadConfig(steps=1), seed=0)


# -------------------------------------------------------------------------- datasets, registry, RNG


def test_augment_dataset_is_sample_major(sentences: list[str]) -> None:
    data = TextDataset(texts=tuple(sentences[:5]), labels=(0, 1, 1, 0, 1), name="d_c")
    augmented = augment_dataset(data, token_split, copies=3, rng=np.random.default_rng(0))
    assert len(augmented) == 15 and augmented.labels == (0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1)
    for i, text in enumerate(augmented.texts):
        inserted_spaces(sentences[i // 3], text)
    assert len(set(augmented.texts[:3])) == 3 and augmented.name == "d_c-aug"


def test_augment_dataset_batches_cwea(sentences: list[str], tiny_mlm, tokenizer, monkeypatch) -> None:
    import core.augment

    masked_lm = MaskedLM(tiny_mlm, tokenizer)
    data = TextDataset(texts=tuple(sentences[:5]), labels=(0, 1, 1, 0, 1), name="d_c")
    repeated = [text for text in sentences[:5] for _ in range(3)]
    expected = cwea_batch(repeated, np.random.default_rng(0), masked_lm=masked_lm)
    calls = []
    monkeypatch.setattr(
        core.augment, "cwea_batch", lambda texts, *a, **k: calls.append(len(texts)) or cwea_batch(texts, *a, **k)
    )
    augmented = augment_dataset(data, partial(cwea, masked_lm=masked_lm), copies=3, rng=np.random.default_rng(0))
    assert calls == [15]  # one batched call over every copy, not one call per copy
    assert augmented.texts == tuple(expected)
    assert augmented.labels == (0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1)
    assert all(len(set(augmented.texts[3 * i : 3 * i + 3])) > 1 for i in range(5))


def test_registry_lookup_and_unknown_name() -> None:
    assert set(AUGMENTATIONS) == {"ts", "eda", "aeda", "cwea", "add_trig"}
    assert get_augmentation("ts") is token_split and get_augmentation("add_trig") is add_trigger
    with pytest.raises(ValueError, match="valid: ts, eda, aeda, cwea, add_trig"):
        get_augmentation("token_split")


def test_no_augmentation_touches_global_rngs(sentences: list[str], wordnet, tiny_mlm, tokenizer) -> None:
    random.seed(11)
    np.random.seed(11)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    rng = np.random.default_rng(0)
    masked_lm = MaskedLM(tiny_mlm, tokenizer)
    for sentence in sentences[:20]:
        token_split(sentence, rng)
        token_split(sentence, rng, count="paper")
        eda(sentence, rng, wordnet=wordnet)
        aeda(sentence, rng)
        add_trigger(sentence, rng, trigger=["cf", "mn"])
    cwea(sentences[0], rng, masked_lm=masked_lm)
    after = random.getstate(), np.random.get_state(), torch.get_rng_state()
    assert after[0] == states[0]
    assert all(np.array_equal(a, b) for a, b in zip(after[1], states[1], strict=True))
    assert torch.equal(after[2], states[2])


def test_token_split_copies_equal_successive_calls(sst2_small) -> None:
    texts = sst2_small.train.texts[:300]
    successive = [token_split(t, rng) for rng in [np.random.default_rng(9)] for t in texts for _ in range(3)]
    rng = np.random.default_rng(9)
    batched = [copy for t in texts for copy in token_split_copies(t, rng, copies=3)]
    assert batched == successive
    assert len(set(batched[:3])) > 1 or not any(len(w) >= 4 for w in texts[0].split())
