"""Token splitting speed and split counts: core.augment.token_split against nlpaug's SplitAug.

    python bench/token_split_bench.py [--n N] [--data-dir DIR]

Runs both on the same SST-2 (OpenBackdoor) training sentences in one process, alternating blocks of
sentences so that a busy machine slows both alike, and prints sentences per CPU second of each
(process time: other jobs on a shared machine do not count; wall-clock ratio printed too), the
ratio (target >= 10x) and both histograms of splits per sentence. nlpaug is the `bench` extra
(`pip install -e '.[bench]'`) and is imported here only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from core.augment import STOPWORDS, token_split, token_split_copies
from core.data import resolve_data_dir

BLOCK = 250  # sentences per timed block; the two augmenters alternate block by block
COPIES = 3  # N, augmented copies per clean sample in D_a (Algorithm 1)


def read_sentences(data_dir: Path, n: int | None) -> list[str]:
    """The OpenBackdoor SST-2 training sentences (header `sentence<TAB>label`, CRLF lines)."""
    lines = (data_dir / "sst2" / "openbackdoor" / "train.tsv").read_text(encoding="utf-8").splitlines()
    return [line.rsplit("\t", 1)[0] for line in lines[1:] if line][:n]


def histogram_table(ours: Counter[int], theirs: Counter[int]) -> str:
    """Splits-per-sentence histograms side by side."""
    rows = [f"{'splits':>6} {'ours':>7} {'nlpaug':>7}"]
    rows += [f"{k:>6} {ours[k]:>7} {theirs[k]:>7}" for k in sorted(ours.keys() | theirs.keys())]
    return "\n".join(rows)


def main() -> None:
    """Time both augmenters, check ours was not disturbed by nlpaug, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="first N training sentences (default: all 6,920)")
    parser.add_argument("--data-dir", type=Path, default=None, help="shared data folder (default: resolved)")
    parser.add_argument("--seed", type=int, default=0, help="seed of our numpy Generator")
    args = parser.parse_args()
    try:
        from nlpaug.augmenter.word import SplitAug
        from nlpaug.util.text.tokenizer import Tokenizer
    except ImportError:
        sys.exit("nlpaug is not installed; it is a benchmark-only extra: pip install -e '.[bench]'")

    sentences = read_sentences(resolve_data_dir(args.data_dir), args.n)
    # Same rule as ours: nlpaug's defaults (aug_p 0.3, aug_min 1, aug_max 10, min_char 4) plus our
    # stop-words, as a set (a list, which nlpaug documents, costs it ~12% in linear look-ups).
    # nlpaug draws from the global `random` / `np.random` states and never reseeds them unless
    # asked (nlpaug.util.Randomness.seed, not called here); ours draws from its own Generator.
    nlpaug = SplitAug(stopwords=set(STOPWORDS))
    rng = np.random.default_rng(args.seed)
    ours_out: list[str] = []
    theirs_out: list[str] = []
    cpu = np.zeros(4)  # ours, nlpaug augment(), nlpaug split(), ours building D_a (3 copies a sentence)
    wall = np.zeros(4)
    copies_rng = np.random.default_rng(args.seed + 1)
    for start in range(0, len(sentences), BLOCK):
        block = sentences[start : start + BLOCK]
        marks = [(time.process_time(), time.perf_counter())]
        ours_out += [token_split(text, rng) for text in block]
        marks.append((time.process_time(), time.perf_counter()))
        theirs_out += [nlpaug.augment(text)[0] for text in block]
        marks.append((time.process_time(), time.perf_counter()))
        for text in block:  # the bare split method, without augment()'s validation and retry wrapper
            nlpaug.split(text)
        marks.append((time.process_time(), time.perf_counter()))
        for text in block:
            token_split_copies(text, copies_rng, copies=COPIES)
        marks.append((time.process_time(), time.perf_counter()))
        spent = np.diff(np.array(marks), axis=0)
        cpu, wall = cpu + spent[:, 0], wall + spent[:, 1]

    replay = np.random.default_rng(args.seed)
    undisturbed = ours_out == [token_split(text, replay) for text in sentences]
    # Each of our splits inserts exactly one space; nlpaug re-spaces punctuation, so its splits are
    # counted as extra tokens of its own tokeniser (a split adds one, re-spacing adds none).
    ours_counts = [len(out) - len(text) for out, text in zip(ours_out, sentences, strict=True)]
    theirs_counts = [
        len(Tokenizer.tokenizer(out)) - len(Tokenizer.tokenizer(text))
        for out, text in zip(theirs_out, sentences, strict=True)
    ]
    agree = np.mean([a == b for a, b in zip(ours_counts, theirs_counts, strict=True)])
    n = len(sentences)
    print(f"sentences: {n} (SST-2 OpenBackdoor train), blocks of {BLOCK}, alternating")
    print(f"ours   token_split      : {n / cpu[0]:>8,.0f} sentences/CPU-s")
    for name, i in (("augment", 1), ("split  ", 2)):
        print(
            f"nlpaug SplitAug.{name} : {n / cpu[i]:>8,.0f} sentences/CPU-s   ratio {cpu[i] / cpu[0]:5.1f}x"
            f"   (wall clock {wall[i] / wall[0]:5.1f}x)"
        )
    per_copy = cpu[3] / COPIES
    print(
        f"building D_a ({COPIES} copies a sentence, as Algorithm 1): "
        f"ours {COPIES * n / cpu[3]:>8,.0f} sentences/CPU-s, nlpaug augment() {n / cpu[1]:>8,.0f}   "
        f"ratio {cpu[1] / per_copy:5.1f}x   (wall clock {wall[1] / (wall[3] / COPIES):5.1f}x)"
    )
    print(f"ours unchanged when replayed without nlpaug in between: {undisturbed}")
    print(f"same split count per sentence: {agree:.1%} (nlpaug also splits tokens with digits, e.g. '1930s')")
    print(f"mean splits: ours {np.mean(ours_counts):.2f}, nlpaug {np.mean(theirs_counts):.2f}")
    print(histogram_table(Counter(ours_counts), Counter(theirs_counts)))


if __name__ == "__main__":
    main()
