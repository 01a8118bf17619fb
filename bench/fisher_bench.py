"""Fine-Purifying's Fisher pass: per-example gradients one backward pass at a time against vmapped batches.

    python bench/fisher_bench.py [--model minilm|tiny] [--samples 64] [--batch 8]

The diagonal empirical Fisher (mean squared per-example cross-entropy gradient of every pre-trained
parameter) on `--samples` real SST-2 training sentences at length 48: the one-at-a-time loop the project
used before, then `diagonal_fisher` (torch.func.vmap over torch.func.grad, `--batch` examples at a time,
texts sorted by length). Prints seconds, examples per second, the speed-up and the largest difference
between the two results relative to the largest Fisher value.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from core.data import TextDataset, load_sst2, resolve_data_dir
from core.defenses.fine_purifying import diagonal_fisher
from core.models import Classifier, default_classifier, tiny_classifier


def one_at_a_time(classifier: Classifier, data: TextDataset, *, names: list[str], max_length: int) -> dict:
    """The reference: one example per backward pass, squared gradients summed."""
    model = copy.deepcopy(classifier.model).eval()
    named = dict(model.base_model.named_parameters())
    params = [named[name] for name in names]
    totals = [torch.zeros_like(p) for p in params]
    for text, label in zip(data.texts, data.labels, strict=True):
        batch = classifier.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        loss = F.cross_entropy(model(**batch).logits.float(), torch.tensor([label]))
        for total, grad in zip(totals, torch.autograd.grad(loss, params, allow_unused=True), strict=True):
            if grad is not None:
                total.add_(grad.pow(2))
    return {name: total / len(data) for name, total in zip(names, totals, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", choices=("minilm", "tiny"))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="examples per vmapped batch")
    args = parser.parse_args()

    data_dir = resolve_data_dir()
    if args.model == "tiny":
        classifier = tiny_classifier(data_dir / "bert-base-uncased" / "vocab.txt", seed=0)
    else:
        classifier = default_classifier(seed=0)
    data = load_sst2(data_dir).train.subset(range(args.samples))
    names = [name for name, _ in classifier.model.base_model.named_parameters()]
    start = time.perf_counter()
    reference = one_at_a_time(classifier, data, names=names, max_length=48)
    looped = time.perf_counter() - start
    start = time.perf_counter()
    batched = diagonal_fisher(classifier, data, names=names, max_length=48, batch_size=args.batch)
    vmapped = time.perf_counter() - start
    scale = max(reference[name].abs().max().item() for name in names)
    difference = max((batched[name] - reference[name]).abs().max().item() for name in names) / scale
    print(f"model {args.model}, {args.samples} examples, length 48, {torch.get_num_threads()} threads")
    print(f"  one at a time        {looped:7.2f} s  {args.samples / looped:6.1f} ex/s")
    print(f"  vmap, batch {args.batch:<3d}      {vmapped:7.2f} s  {args.samples / vmapped:6.1f} ex/s")
    print(f"speed-up: {looped / vmapped:.2f}x; largest difference / largest Fisher value: {difference:.1e}")


if __name__ == "__main__":
    main()
