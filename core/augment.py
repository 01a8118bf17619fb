"""Text augmentations, the paper's set B = {TS, EDA, AEDA, CWEA, Add Trig} (eq. 9).

Every augmentation is a pure function `(text, rng, *, options) -> str` that draws all of its
randomness from the numpy Generator it is given; none touches Python's `random`, numpy's global state
or torch's global seed. Options come as keyword arguments or a small frozen config. CWEA and EDA need
a resource (a masked LM, WordNet): bind it with `functools.partial` to get a `(text, rng) -> str`.
CWEA also runs over many texts at once (`cwea_batch`, batched masked-LM passes), which `augment_dataset` uses.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.data import DATA_ENV, TextDataset, resolve_data_dir

if TYPE_CHECKING:
    import torch
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# The stop-word list hard-coded in the EDA reference implementation (jasonwei20/eda_nlp,
# code/eda.py): NLTK's English list up to "now" without the apostrophe forms, 127 words. EDA skips
# them for synonym replacement; token splitting skips them too (only the entries of >= 4 letters
# matter there). Matched case-insensitively.
STOPWORDS: frozenset[str] = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that
    these those am is are was were be been being have has had having do does did doing a an the and
    but if or because as until while of at by for with about against between into through during
    before after above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not only own same
    so than too very s t can will just don should now""".split()
)

# nlpaug's word tokeniser (`re.split(r"(\W)")`, blanks dropped): runs of word characters and single
# non-space symbols (\S is only tried where \w+ failed, so it is [^\w\s]; written so, it is faster).
# Capturing, so `.split` gives [gap, token, gap, ..., token, gap] with only whitespace in the gaps:
# replacing tokens in that list and joining it keeps every other byte.
_TOKEN_SPLIT_RE = re.compile(r"(\w+|\S)")
# The same on ASCII text, ~20% faster: ASCII-mode \w is a table lookup, and \x1c-\x1f, which str
# counts as whitespace but ASCII-mode \s does not, stay out of the tokens as above.
_ASCII_TOKEN_SPLIT_RE = re.compile(r"(\w+|[^\s\x1c-\x1f])", re.ASCII)
_WORD_RE = re.compile(r"\S+")  # whitespace-separated words: the positions AEDA and Add Trig insert at
_LETTERS_RE = re.compile(r"[^a-z ]")  # EDA keeps only lowercase ASCII letters and spaces in a synonym

CountMode = Literal["nlpaug", "paper"]
COUNT_MODES = ("nlpaug", "paper")


def augmented_word_count(
    n_tokens: int, n_eligible: int, *, fraction: float, minimum: int, maximum: int, mode: CountMode
) -> int:
    """Words to augment: nlpaug's min(maximum, max(minimum, ceil(fraction n))) or the paper's
    max(maximum, ceil(fraction n)) (Sec. IV-A5), either capped by the number of eligible words."""
    if mode == "nlpaug":
        wanted = min(maximum, max(minimum, math.ceil(fraction * n_tokens))) if n_tokens else 0
    elif mode == "paper":
        wanted = max(maximum, math.ceil(fraction * n_tokens))
    else:
        raise ValueError(f"unknown count mode {mode!r}; valid: {', '.join(COUNT_MODES)}")
    return min(wanted, n_eligible)


# ---------------------------------------------------------------------------------------------- TS


@dataclass(frozen=True)
class TokenSplitConfig:
    """Token splitting (nlpaug SplitAug) constants."""

    fraction: float = 0.3  # share of tokens to split (nlpaug aug_p)
    minimum: int = 1  # fewest splits in nlpaug mode (aug_min)
    maximum: int = 10  # most splits in nlpaug mode, fewest in paper mode (aug_max; the paper's 10)
    min_chars: int = 4  # shorter tokens are never split (nlpaug min_char); >= 3 leaves a cut position
    stopwords: frozenset[str] = STOPWORDS  # never split (lowercased match); nlpaug's own default is none

    def __post_init__(self) -> None:
        if self.min_chars < 3:
            raise ValueError(
                f"min_chars must be >= 3 to cut a word into pieces of >= 1 and >= 2 chars, got {self.min_chars}"
            )


def token_split(
    text: str,
    rng: np.random.Generator,
    *,
    count: CountMode = "nlpaug",
    config: TokenSplitConfig = TokenSplitConfig(),
) -> str:
    """Token splitting (Sec. III-B1): split sampled words in two at a random inner position.

    As nlpaug's SplitAug: n counts all tokens (punctuation included); eligible are alphabetic tokens
    of >= min_chars characters that are not stop-words; the words are drawn without replacement."""
    return token_split_copies(text, rng, copies=1, count=count, config=config)[0]


def token_split_copies(
    text: str,
    rng: np.random.Generator,
    *,
    copies: int,
    count: CountMode = "nlpaug",
    config: TokenSplitConfig = TokenSplitConfig(),
) -> list[str]:
    """`copies` token-split versions of one text, equal to as many successive `token_split` calls.

    The text is tokenised once for all copies (D_a's N = 3 copies per sample), and one draw of
    2 m copies uniforms gives exactly the numbers that `copies` draws of 2 m would."""
    parts = (_ASCII_TOKEN_SPLIT_RE if text.isascii() else _TOKEN_SPLIT_RE).split(text)
    min_chars, stopwords = config.min_chars, config.stopwords
    eligible = [
        i
        for i in range(1, len(parts), 2)
        if len(token := parts[i]) >= min_chars and token.isalpha() and token.lower() not in stopwords
    ]
    if not eligible:
        return [text] * copies
    k = len(eligible)
    m = augmented_word_count(
        len(parts) // 2, k, fraction=config.fraction, minimum=config.minimum, maximum=config.maximum, mode=count
    )
    # One draw keeps this several times faster than rng.choice: per copy, its first m uniforms drive a
    # partial Fisher-Yates shuffle (m words without replacement), the next m the split positions.
    draws = rng.random(2 * m * copies).tolist()
    out = []
    for c in range(copies):
        u = draws[2 * m * c : 2 * m * (c + 1)]
        split, order = parts.copy(), eligible.copy()
        for i in range(m):
            j = i + int(u[i] * (k - i))
            order[i], order[j] = order[j], order[i]
            word = split[order[i]]
            cut = 1 + int(u[m + i] * (len(word) - 2))  # uniform in 1..len-2, nlpaug's randint(1, len-1)
            split[order[i]] = f"{word[:cut]} {word[cut:]}"
        out.append("".join(split))
    return out


# --------------------------------------------------------------------------------------------- EDA


def wordnet_data_dir(data_dir: str | Path | None = None) -> Path:
    """The NLTK data folder holding corpora/wordnet: under the data folder given or in $MBTSAD_DATA,
    else the first $NLTK_DATA entry that has it, else under ../shared/data beside the checkout."""
    if data_dir is None and not os.environ.get(DATA_ENV):
        for entry in filter(None, os.environ.get("NLTK_DATA", "").split(os.pathsep)):
            if (Path(entry) / "corpora" / "wordnet").is_dir():
                return Path(entry).resolve()
    folder = resolve_data_dir(data_dir) / "wordnet" / "nltk_data"
    if not (folder / "corpora" / "wordnet").is_dir():
        raise FileNotFoundError(f"no corpora/wordnet under {folder} (nor in $NLTK_DATA)")
    return folder.resolve()


def load_wordnet(data_dir: str | Path | None = None) -> WordNetCorpusReader:
    """WordNet 3.0 from `wordnet_data_dir(data_dir)`, opened once per folder."""
    return _open_wordnet(wordnet_data_dir(data_dir))


@lru_cache(maxsize=4)
def _open_wordnet(nltk_data: Path) -> WordNetCorpusReader:
    """The WordNet reader over one NLTK data folder (reading it takes seconds, hence the cache)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    # NLTK >= 3.9 refuses to read corpora outside nltk.data.path / $NLTK_DATA, so the folder is
    # registered there (NLTK's own search path; nothing else in the process changes).
    if str(nltk_data) not in map(str, nltk.data.path):
        nltk.data.path.append(str(nltk_data))
    with warnings.catch_warnings():  # no Open Multilingual Wordnet is shipped, and none is needed
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return WordNetCorpusReader(str(nltk_data / "corpora" / "wordnet"), None)


@dataclass(frozen=True)
class EdaConfig:
    """EDA (Wei & Zou, 2019) rates, the reference defaults the paper uses."""

    alpha_sr: float = 0.1  # share of words replaced by a WordNet synonym (at least one)
    alpha_ri: float = 0.1  # share of words for which a synonym is inserted (at least one)
    alpha_rs: float = 0.1  # share of words for which two words are swapped (at least one)
    p_rd: float = 0.1  # probability that each word is deleted
    stopwords: frozenset[str] = STOPWORDS  # never chosen for synonym replacement


def synonyms(word: str, wordnet: WordNetCorpusReader) -> list[str]:
    """EDA's WordNet synonyms of a word: lemma names lowercased, letters and spaces only, sorted."""
    found = set()
    for synset in wordnet.synsets(word.lower()):
        for lemma in synset.lemmas():
            name = lemma.name().replace("_", " ").replace("-", " ").lower()
            found.add(_LETTERS_RE.sub("", name).strip())
    found.discard(word.lower())
    found.discard("")
    return sorted(found)  # sorted: a set's order varies with the hash seed, which would break replay


def _replace_synonyms(
    words: list[str], n: int, rng: np.random.Generator, wordnet: WordNetCorpusReader, stopwords: frozenset[str]
) -> list[str]:
    """EDA's synonym replacement: up to n distinct non-stop-words, every occurrence replaced."""
    candidates = [w for w in dict.fromkeys(words) if w.isalpha() and w.lower() not in stopwords]
    replaced = 0
    for candidate in (candidates[i] for i in rng.permutation(len(candidates))):
        options = synonyms(candidate, wordnet)
        if options:
            choice = options[rng.integers(len(options))]
            words = [choice if w == candidate else w for w in words]
            replaced += 1
        if replaced >= n:
            break
    return words


def _insert_synonyms(words: list[str], n: int, rng: np.random.Generator, wordnet: WordNetCorpusReader) -> list[str]:
    """EDA's random insertion: n times, a synonym of a random word at a random position (never last)."""
    words = list(words)
    for _ in range(n):
        for _attempt in range(10):  # EDA gives up on a word after ten draws without a synonym
            options = synonyms(words[rng.integers(len(words))], wordnet)
            if options:
                words.insert(int(rng.integers(len(words))), options[rng.integers(len(options))])
                break
    return words


def _swap_words(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """EDA's random swap: n times, two distinct positions exchange their words."""
    words = list(words)
    if len(words) < 2:
        return words
    for _ in range(n):
        i, j = rng.choice(len(words), size=2, replace=False)
        words[i], words[j] = words[j], words[i]
    return words


def _delete_words(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
    """EDA's random deletion: each word dropped with probability p, one word always left."""
    if len(words) == 1:
        return words
    kept = [w for w, u in zip(words, rng.random(len(words)), strict=True) if u > p]
    return kept or [words[rng.integers(len(words))]]


def eda(
    text: str,
    rng: np.random.Generator,
    *,
    wordnet: WordNetCorpusReader | None = None,
    config: EdaConfig = EdaConfig(),
) -> str:
    """EDA (Wei & Zou, 2019): one of synonym replacement, random insertion, swap or deletion, drawn
    uniformly, as the reference's one-output-per-sentence (num_aug = 1) setting does.

    Works on whitespace-separated words and joins them with single spaces; unlike the reference it
    keeps case and punctuation (its get_only_chars would lowercase and strip them), so the only
    change is the operation itself. Bind `wordnet=load_wordnet(...)` with partial for bulk use."""
    words = text.split()
    if not words:
        return text
    wordnet = wordnet if wordnet is not None else load_wordnet()
    n = len(words)
    rates = {"sr": config.alpha_sr, "ri": config.alpha_ri, "rs": config.alpha_rs, "rd": config.p_rd}
    enabled = [name for name, rate in rates.items() if rate > 0]  # as in EDA, a zero rate drops the operation
    if not enabled:
        return text
    operation = enabled[int(rng.integers(len(enabled)))]
    if operation == "sr":
        words = _replace_synonyms(words, max(1, int(config.alpha_sr * n)), rng, wordnet, config.stopwords)
    elif operation == "ri":
        words = _insert_synonyms(words, max(1, int(config.alpha_ri * n)), rng, wordnet)
    elif operation == "rs":
        words = _swap_words(words, max(1, int(config.alpha_rs * n)), rng)
    else:
        words = _delete_words(words, config.p_rd, rng)
    return " ".join(words)


# -------------------------------------------------------------------------------- AEDA and Add Trig

AEDA_PUNCTUATION = (".", ",", "!", "?", ";", ":")


def aeda(text: str, rng: np.random.Generator, *, ratio: float = 0.3) -> str:
    """AEDA (Karimi et al., 2021): insert q ~ U{1..int(ratio n + 1)} punctuation marks before q
    distinct words of the n, as the reference does; the rest of the text is kept byte for byte."""
    starts = [m.start() for m in _WORD_RE.finditer(text)]
    if not starts:
        return text
    q = int(rng.integers(1, int(ratio * len(starts) + 1), endpoint=True))
    chosen = np.sort(rng.choice(len(starts), size=q, replace=False))
    marks = rng.integers(len(AEDA_PUNCTUATION), size=q)
    pieces, last = [], 0
    for index, mark in zip(chosen.tolist(), marks.tolist(), strict=True):
        pieces += [text[last : starts[index]], AEDA_PUNCTUATION[mark], " "]
        last = starts[index]
    pieces.append(text[last:])
    return "".join(pieces)


def insert_word(text: str, word: str, position: int) -> str:
    """Insert word before the position-th whitespace-separated word (position = word count: after the
    last); the rest of the text is kept byte for byte."""
    spans = [m.span() for m in _WORD_RE.finditer(text)]
    if not 0 <= position <= len(spans):
        raise ValueError(f"position {position} outside 0..{len(spans)}")
    if not spans:
        return word
    if position == len(spans):
        end = spans[-1][1]
        return f"{text[:end]} {word}{text[end:]}"
    start = spans[position][0]
    return f"{text[:start]}{word} {text[start:]}"


ADD_TRIG_WORD = "cb"  # Table III's Add Trig augmentation inserts this word


def add_trigger(text: str, rng: np.random.Generator, *, trigger: str | Sequence[str] = ADD_TRIG_WORD) -> str:
    """Insert a trigger (drawn uniformly when several) at a uniform word position, ends included."""
    if isinstance(trigger, str):
        word = trigger
    elif trigger:
        word = trigger[int(rng.integers(len(trigger)))]
    else:
        raise ValueError("no trigger given")
    n_words = sum(1 for _ in _WORD_RE.finditer(text))
    return insert_word(text, word, int(rng.integers(n_words, endpoint=True)))


# -------------------------------------------------------------------------------------------- CWEA


@dataclass(frozen=True, eq=False)
class MaskedLM:
    """A Hugging Face `*ForMaskedLM` model with its tokenizer, the word each vocabulary id stands for, and the
    vocabulary CWEA never proposes: special tokens and every token that is not a whole word, purely alphabetic.

    A whole word is a token with the tokenizer's word-start marker (none in WordPiece, whose '##' continuation
    pieces are thereby left out; byte-level BPE's 'Ġ', dropped from the word), so [UNK], [unused*], pieces,
    punctuation and numbers never replace a word. With byte-level BPE a text's first word (no space before it,
    so only unmarked pieces fit there) is thus never replaced."""

    model: PreTrainedModel  # any *ForMaskedLM; put into eval mode by cwea
    tokenizer: PreTrainedTokenizerBase  # the model's tokenizer, with a mask token
    words: tuple[str, ...] = field(init=False, repr=False)  # per vocabulary id: the token, its word-start marker cut
    banned: torch.Tensor = field(init=False, repr=False)  # bool per vocabulary id: never a substitute

    def __post_init__(self) -> None:
        import torch

        tokens = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        probe = self.tokenizer.convert_ids_to_tokens(self.tokenizer(" a", add_special_tokens=False)["input_ids"])
        marker = probe[-1][:-1] if probe and probe[-1].endswith("a") else ""  # "" WordPiece, "Ġ" byte-level BPE
        special = set(self.tokenizer.all_special_ids)
        words = tuple(token.removeprefix(marker) if token.startswith(marker) else "" for token in tokens)
        banned = [i in special or not word.isalpha() for i, word in enumerate(words)]
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "banned", torch.tensor(banned))


@dataclass(frozen=True)
class CweaConfig:
    """Contextual word-embedding augmentation (Kobayashi, 2018; nlpaug ContextualWordEmbsAug) constants."""

    fraction: float = 0.3  # share of tokens substituted (nlpaug aug_p)
    maximum: int = 10  # most substitutions per text (nlpaug aug_max)
    top_k: int = 100  # sample among the masked LM's top_k predictions
    context_chars: int = 800  # characters of context kept each side of the masked word (long reviews)
    max_tokens: int = 512  # model input limit; a mask cut off by it leaves that word unchanged


def cwea(
    text: str,
    rng: np.random.Generator,
    *,
    masked_lm: MaskedLM,
    config: CweaConfig = CweaConfig(),
) -> str:
    """CWEA on one text: `cwea_batch` of it alone, so one seed is drawn from rng and the rest from that seed."""
    return cwea_batch([text], rng, masked_lm=masked_lm, config=config)[0]


@dataclass
class _CweaText:
    """One text in CWEA's lockstep: its tokens and gaps (as `_TOKEN_SPLIT_RE.split`), the sorted indices of
    the words to replace, and the text's own generator."""

    parts: list[str]
    words: list[int]
    rng: np.random.Generator


def _cwea_start(text: str, rng: np.random.Generator, config: CweaConfig) -> _CweaText:
    """A text's CWEA state: m of its alphabetic words drawn without replacement (nlpaug's count), left to right."""
    parts = _TOKEN_SPLIT_RE.split(text)
    words = [i for i in range(1, len(parts), 2) if parts[i].isalpha()]
    m = augmented_word_count(
        len(parts) // 2, len(words), fraction=config.fraction, minimum=1, maximum=config.maximum, mode="nlpaug"
    )
    return _CweaText(parts, sorted(rng.choice(words, size=m, replace=False).tolist()) if m else [], rng)


def _masked_query(text: _CweaText, index: int, mask_token: str, config: CweaConfig) -> str:
    """The text so far with word `index` masked, cut to `config.context_chars` characters each side."""
    left = "".join(text.parts[:index])[-config.context_chars :]
    right = "".join(text.parts[index + 1 :])[: config.context_chars]
    return left + mask_token + right


def _logits_at(
    model: PreTrainedModel, inputs: dict[str, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """A masked LM's logits at positions (rows, cols) alone: a BERT, RoBERTa or MPNet vocabulary head runs on those
    positions only (on MiniLM it is about half a full forward pass), any other masked LM runs whole."""
    from core.mlm import MLM_HEADS, masked_lm_head

    if model.config.model_type in MLM_HEADS:
        return masked_lm_head(model)(model.base_model(**inputs).last_hidden_state[rows, cols])
    return model(**inputs).logits[rows, cols]


def _mask_predictions(masked_lm: MaskedLM, queries: list[str], config: CweaConfig) -> tuple[list[int], torch.Tensor]:
    """One padded forward pass over the queries: the queries whose mask survived truncation, and the logits
    (float32, on the CPU) at each one's first mask token."""
    import torch

    tokenizer = masked_lm.tokenizer
    encoded = tokenizer(queries, padding=True, truncation=True, max_length=config.max_tokens, return_tensors="pt")
    is_mask = encoded["input_ids"] == tokenizer.mask_token_id
    rows = is_mask.any(dim=1).nonzero().flatten()
    if len(rows) == 0:
        return [], torch.empty(0)
    cols = is_mask.int().argmax(dim=1)[rows]  # the first mask, as `cwea` always took
    device = next(masked_lm.model.parameters()).device
    with torch.no_grad():
        logits = _logits_at(masked_lm.model, dict(encoded.to(device)), rows.to(device), cols.to(device))
    return rows.tolist(), logits.float().cpu()


def _substitute(text: _CweaText, index: int, candidates: list[str], probs: torch.Tensor, banned: torch.Tensor) -> None:
    """Replace word `index` by a draw from the top-k candidates' softmax, the banned ones and the word itself
    (case-insensitively) left out; nothing is drawn when no candidate is left."""
    import torch

    original = text.parts[index]
    keep = ~banned & torch.tensor([c.lower() != original.lower() for c in candidates])
    if not keep.any():
        return
    weights = (probs * keep).double().numpy()
    substitute = candidates[text.rng.choice(len(candidates), p=weights / weights.sum())]
    text.parts[index] = substitute.capitalize() if original.istitle() else substitute  # as nlpaug aligns case


def cwea_batch(
    texts: Sequence[str],
    rng: np.random.Generator,
    *,
    masked_lm: MaskedLM,
    config: CweaConfig = CweaConfig(),
    batch_size: int = 64,
) -> list[str]:
    """CWEA (Kobayashi, 2018; nlpaug ContextualWordEmbsAug) on many texts, in input order: each text's sampled
    words are replaced one at a time, left to right, each by a draw from the masked LM's softmax over its top-k
    predictions for that position given the text's substitutions so far.

    The texts run in lockstep: step k masks every text's k-th word (those with one), and the masked texts, sorted
    by length so that a batch pads little, go through the masked LM `batch_size` at a time (padded, with the
    attention mask). RNG: one seed per text is drawn from rng up front, in text order (`rng.integers(2**63,
    size=len(texts))`, the same numbers as that many scalar draws), and every draw for a text, its word positions
    and then one per substitution, comes from its own `np.random.default_rng(seed)`. So rng advances by exactly
    one draw per text, the output does not depend on batch_size or on which texts share a batch, and
    `cwea_batch(texts, rng)` equals `[cwea(t, rng) for t in texts]`; all of this up to the floating-point noise
    that a different padding may add to the logits, which a draw would have to fall within to change."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    seeds = rng.integers(2**63, size=len(texts)).tolist()
    states = [_cwea_start(text, np.random.default_rng(seed), config) for text, seed in zip(texts, seeds, strict=True)]
    masked_lm.model.eval()
    tokenizer = masked_lm.tokenizer
    for step in range(max((len(s.words) for s in states), default=0)):
        active = [s for s in states if step < len(s.words)]
        queries = [_masked_query(s, s.words[step], tokenizer.mask_token, config) for s in active]
        order = sorted(range(len(active)), key=lambda i: len(queries[i]))  # characters: a proxy for tokens
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            rows, logits = _mask_predictions(masked_lm, [queries[i] for i in chunk], config)
            if not rows:
                continue
            top = logits.topk(config.top_k)
            probs, banned = top.values.softmax(-1), masked_lm.banned[top.indices]
            for r, row in enumerate(rows):
                text = active[chunk[row]]
                candidates = [masked_lm.words[i] for i in top.indices[r].tolist()]
                _substitute(text, text.words[step], candidates, probs[r], banned[r])
    return ["".join(s.parts) for s in states]


# ------------------------------------------------------------------------------- datasets, registry


def augment_dataset(
    dataset: TextDataset,
    augment: Callable[[str, np.random.Generator], str],
    *,
    copies: int = 3,
    rng: np.random.Generator,
    name: str | None = None,
) -> TextDataset:
    """D_a of Algorithm 1: `copies` augmented texts per sample (sample-major), each with its label.

    Two augmentations take a faster path to the same texts: `token_split` and a `partial(cwea, ...)`, whose
    copies go through `cwea_batch` together (which equals one `cwea` call per copy with the same rng)."""
    if augment is token_split:  # same texts as the generic path, with one tokenisation per sample
        texts = tuple(t for text in dataset.texts for t in token_split_copies(text, rng, copies=copies))
    elif isinstance(augment, partial) and augment.func is cwea and not augment.args:  # same texts, batched
        texts = tuple(cwea_batch([t for t in dataset.texts for _ in range(copies)], rng, **augment.keywords))
    else:
        texts = tuple(augment(text, rng) for text in dataset.texts for _ in range(copies))
    labels = tuple(label for label in dataset.labels for _ in range(copies))
    return TextDataset(texts=texts, labels=labels, name=name or f"{dataset.name}-aug")


AUGMENTATIONS: dict[str, Callable[..., str]] = {
    "ts": token_split,
    "eda": eda,
    "aeda": aeda,
    "cwea": cwea,
    "add_trig": add_trigger,
}


def get_augmentation(name: str) -> Callable[..., str]:
    """The augmentation registered under name; cwea still needs `masked_lm` bound with partial."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]
