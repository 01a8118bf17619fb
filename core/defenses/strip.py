"""STRIP (Gao et al., 2019) for text, as OpenBackdoor runs it: perturb, predict, flag low entropy.

Each input is perturbed `repeat` times by replacing a share of its words with the highest-TF-IDF
words of a randomly drawn clean dev sentence. A trigger keeps forcing the target whatever else
changes, so triggered inputs keep confident (low-entropy) predictions under perturbation. The
threshold is the clean dev entropy that rejects the configured share (FRR) of clean dev inputs.

Where this differs from OpenBackdoor's code, on purpose: replaced positions are drawn without
replacement (OpenBackdoor may draw a position twice), replacement words cycle through the drawn
sentence's nonzero-TF-IDF words (OpenBackdoor runs past them into arbitrary zero-score words), and the
entropies are averaged per input (OpenBackdoor's reshape mixes inputs). Each text's perturbations come
from a numpy Generator seeded by (seed, crc32 of the text), so a text's score does not depend on the
batch or order it arrives in, and scoring is reproducible.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from core.batching import predict_proba
from core.defenses.base import Defense, DefenseInputs
from core.models import Classifier
from core.train import bf16_supported


@dataclass(frozen=True)
class StripConfig:
    """STRIP settings: OpenBackdoor's defaults (configs/strip_config.json), which the paper follows."""

    repeat: int = 5  # perturbed copies per input; their prediction entropies are averaged
    swap_ratio: float = 0.5  # share of an input's words replaced in each copy (int(n * ratio) words)
    frr: float = 0.01  # false-rejection rate allowed on clean dev; sets the threshold
    stop_words: str | None = "english"  # TF-IDF ignores these (scikit-learn's list), so fillers are content words
    batch_size: int = 128  # prediction batch size
    max_length: int = 128  # truncation in tokens
    bf16: bool | None = None  # bf16 autocast for predictions; None: on only where the hardware has native bf16

    def __post_init__(self) -> None:
        if self.repeat < 1 or not 0.0 < self.swap_ratio <= 1.0 or not 0.0 <= self.frr < 1.0:
            raise ValueError(f"STRIP needs repeat >= 1, 0 < swap_ratio <= 1, 0 <= frr < 1: {self}")


def replacement_pool(texts: Sequence[str], *, stop_words: str | None) -> tuple[tuple[str, ...], ...]:
    """For each clean sentence with any scored word, its words by descending TF-IDF (zero scores dropped)."""
    vectorizer = TfidfVectorizer(use_idf=True, smooth_idf=True, norm=None, stop_words=stop_words)
    matrix = vectorizer.fit_transform(list(texts)).tocsr()
    vocabulary = vectorizer.get_feature_names_out()
    pool = []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns, scores = matrix.indices[start:end], matrix.data[start:end]
        order = np.lexsort((columns, -scores))  # by score, ties by column: deterministic
        if len(order):
            pool.append(tuple(str(vocabulary[columns[i]]) for i in order))
    if not pool:
        raise ValueError("STRIP: no clean dev sentence has a word left after stop-word removal")
    return tuple(pool)


def perturb(text: str, *, pool: Sequence[Sequence[str]], swap_ratio: float, rng: np.random.Generator) -> str:
    """Replace int(n * swap_ratio) distinct word positions with one clean sentence's top-TF-IDF words."""
    words = text.split()
    count = int(len(words) * swap_ratio)
    if count == 0:
        return text
    source = pool[int(rng.integers(len(pool)))]
    positions = rng.choice(len(words), size=count, replace=False)
    for rank, position in enumerate(positions):
        words[position] = source[rank % len(source)]
    return " ".join(words)


def text_rng(seed: int, text: str) -> np.random.Generator:
    """The Generator of one text's perturbations: seeded by the run's seed and the text itself."""
    return np.random.default_rng([seed, zlib.crc32(text.encode("utf-8"))])


def perturbation_entropy(
    classifier: Classifier,
    texts: Sequence[str],
    *,
    pool: Sequence[Sequence[str]],
    config: StripConfig,
    seed: int,
) -> np.ndarray:
    """Mean prediction entropy (bits) over each text's `repeat` perturbed copies."""
    copies: list[str] = []
    for text in texts:
        rng = text_rng(seed, text)
        copies.extend(perturb(text, pool=pool, swap_ratio=config.swap_ratio, rng=rng) for _ in range(config.repeat))
    device = next(classifier.model.parameters()).device
    probabilities = predict_proba(
        classifier.model,
        classifier.tokenizer,
        copies,
        batch_size=config.batch_size,
        max_length=config.max_length,
        bf16=bf16_supported(device) if config.bf16 is None else config.bf16,
    ).astype(np.float64)
    logs = np.log2(probabilities, out=np.zeros_like(probabilities), where=probabilities > 0)
    entropy = -(probabilities * logs).sum(axis=1)
    return entropy.reshape(len(texts), config.repeat).mean(axis=1)


def frr_threshold(clean_scores: np.ndarray, *, frr: float) -> float:
    """OpenBackdoor's rule: the int(n frr)-th smallest clean score; scores strictly below it are flagged."""
    ordered = np.sort(np.asarray(clean_scores, dtype=np.float64))
    if not len(ordered):
        raise ValueError("no clean scores to set a threshold on")
    return float(ordered[int(len(ordered) * frr)])


@dataclass(frozen=True)
class StripDetector:
    """A calibrated STRIP detector; reads the suspect, never writes it."""

    classifier: Classifier
    pool: tuple[tuple[str, ...], ...]  # clean dev sentences' words by TF-IDF
    threshold: float  # mean entropy below which an input is flagged
    config: StripConfig
    seed: int

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Mean perturbation entropy per text: low means suspect."""
        return perturbation_entropy(self.classifier, list(texts), pool=self.pool, config=self.config, seed=self.seed)

    def flag(self, texts: Sequence[str]) -> np.ndarray:
        """True where an input's entropy falls below the clean-dev threshold."""
        return self.scores(texts) < self.threshold


def strip(inputs: DefenseInputs, config: StripConfig) -> StripDetector:
    """STRIP calibrated on clean dev: replacement words from its TF-IDF, threshold at the configured FRR."""
    pool = replacement_pool(inputs.dev.texts, stop_words=config.stop_words)
    clean = perturbation_entropy(inputs.suspect, list(inputs.dev.texts), pool=pool, config=config, seed=inputs.seed)
    threshold = frr_threshold(clean, frr=config.frr)
    return StripDetector(inputs.suspect, pool, threshold, config, inputs.seed)


DEFENSE = Defense(name="strip", kind="detection", run=strip, config_type=StripConfig)
