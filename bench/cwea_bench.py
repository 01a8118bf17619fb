"""CWEA speed: `cwea` text by text (one batch-1 masked-LM pass per word) against `cwea_batch` (batched passes).

    python bench/cwea_bench.py [--n 300] [--batch-size 64] [--repeats 1] [--mlm-steps 0] [--seed 0]

Both run on the first N SST-2 (OpenBackdoor) training sentences with the offline MiniLM masked LM, whose MLM
head is fresh from the seed (or fitted for --mlm-steps steps; the timing hardly depends on it), in one process,
alternating the two --repeats times so that a busy machine slows both alike. Prints CPU and wall-clock seconds,
texts per second and the ratio of each, and how many outputs agree: with the same seed the two give the same
texts (one seed per text drawn in text order), up to floating-point noise from the padding.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from core.augment import MaskedLM, cwea, cwea_batch
from core.data import load_sst2, resolve_data_dir
from core.mlm import MlmHeadConfig, fit_mlm_head
from core.models import default_encoder_dir, load_tokenizer


def main() -> None:
    """Time both CWEA paths on the same texts and seed, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="first N training sentences")
    parser.add_argument("--batch-size", type=int, default=64, help="cwea_batch's texts per forward pass")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds of each, alternating")
    parser.add_argument("--mlm-steps", type=int, default=0, help="MLM head training steps (0: a fresh head)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the head and of the numpy Generator")
    args = parser.parse_args()

    hf_logging.set_verbosity_error()  # loading the encoder into BertForMaskedLM reports the new head's weights
    hf_logging.disable_progress_bar()
    texts = list(load_sst2(resolve_data_dir()).train.texts[: args.n])
    encoder = default_encoder_dir()
    tokenizer = load_tokenizer(encoder)
    model = fit_mlm_head(encoder, tokenizer, texts, config=MlmHeadConfig(steps=args.mlm_steps), seed=args.seed)
    masked_lm = MaskedLM(model=model, tokenizer=tokenizer)
    cwea(texts[0], np.random.default_rng(0), masked_lm=masked_lm)  # warm-up, untimed
    runs: dict[str, Callable[[np.random.Generator], list[str]]] = {
        "cwea, text by text": lambda rng: [cwea(text, rng, masked_lm=masked_lm) for text in texts],
        f"cwea_batch, batch {args.batch_size}": lambda rng: cwea_batch(
            texts, rng, masked_lm=masked_lm, batch_size=args.batch_size
        ),
    }
    cpu, wall, outputs = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0.0), {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.process_time(), time.perf_counter()
            outputs[name] = run(np.random.default_rng(args.seed))
            cpu[name] += time.process_time() - start[0]
            wall[name] += time.perf_counter() - start[1]

    loop, batched = runs
    n = len(texts) * args.repeats
    print(f"texts: {len(texts)} (SST-2 OpenBackdoor train) x {args.repeats}, {torch.get_num_threads()} torch threads")
    for name in runs:
        print(f"{name:24s} {cpu[name]:8.2f} CPU-s {n / cpu[name]:8.1f} texts/CPU-s   {wall[name]:8.2f} s wall")
    print(f"ratio: {cpu[loop] / cpu[batched]:.2f}x CPU time   ({wall[loop] / wall[batched]:.2f}x wall clock)")
    same = sum(a == b for a, b in zip(outputs[loop], outputs[batched], strict=True))
    changed = sum(a != b for a, b in zip(texts, outputs[batched], strict=True))
    print(f"same output: {same}/{len(texts)} texts; changed by CWEA: {changed}/{len(texts)}")


if __name__ == "__main__":
    main()
