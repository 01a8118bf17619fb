"""Cost of one MBTSAD distillation step against one cross-entropy fine-tuning step, and bf16 against fp32.

    python bench/train_step_bench.py [--model minilm|tiny] [--length 64] [--batch 32] [--steps 5]

Same model, same batch of real SST-2 sentences padded to `--length`, measured side by side in one
process, alternating the methods step by step so a busy machine slows both alike. Prints seconds per
step of each and the ratios: distillation / fine-tuning (target <= 1.2) and bf16 / fp32 for both.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from core.batching import Batch
from core.data import load_sst2, resolve_data_dir
from core.models import default_classifier, tiny_classifier
from core.train import cross_entropy_term, distillation_terms, frozen_teacher, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", choices=("minilm", "tiny"))
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method and precision")
    parser.add_argument("--no-bf16", action="store_true", help="skip bf16 (very slow on CPUs without native bf16)")
    args = parser.parse_args()

    data_dir = resolve_data_dir()
    if args.model == "tiny":
        classifier = tiny_classifier(data_dir / "bert-base-uncased" / "vocab.txt", seed=0)
    else:
        classifier = default_classifier(seed=0)
    train = load_sst2(data_dir).train
    encoded = classifier.tokenizer(
        list(train.texts[: args.batch]),
        padding="max_length",
        truncation=True,
        max_length=args.length,
        return_tensors="pt",
    )
    batch = Batch(inputs=dict(encoded), labels=torch.tensor(train.labels[: args.batch]))
    teacher = copy.deepcopy(classifier.model).eval()
    teachers = {bf16: frozen_teacher(teacher, bf16=bf16) for bf16 in (False, True)}  # as `fit` runs it
    methods = {
        "fine-tune (CE)": (cross_entropy_term(),),
        "MBTSAD distillation": distillation_terms(alpha=1.0, beta=1.0),
    }
    precisions = [False] if args.no_bf16 else [False, True]
    times: dict[tuple[str, bool], list[float]] = {(m, p): [] for m in methods for p in precisions}
    model = classifier.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # as `fit` builds it
    for step in range(args.steps + 1):  # the first round warms up and is not counted
        for (name, bf16), record in times.items():
            terms = methods[name]
            teach = teachers[bf16] if name == "MBTSAD distillation" else None
            start = time.perf_counter()
            train_step(model, optimizer, batch, terms, teacher=teach, bf16=bf16)
            if step:
                record.append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"model {args.model}, batch {args.batch}, length {args.length}, {args.steps} steps each, "
        f"{torch.get_num_threads()} threads"
    )
    for (name, bf16), seconds in median.items():
        print(f"  {name:22s} {'bf16' if bf16 else 'fp32'}  {seconds:.3f} s/step  {args.batch / seconds:.1f} ex/s")
    for bf16 in precisions:
        ratio = median[("MBTSAD distillation", bf16)] / median[("fine-tune (CE)", bf16)]
        print(f"distillation / fine-tuning ({'bf16' if bf16 else 'fp32'}): {ratio:.2f}x (target <= 1.2)")
    if len(precisions) == 2:
        for name in methods:
            print(f"bf16 / fp32 time, {name}: {median[(name, True)] / median[(name, False)]:.2f}x")


if __name__ == "__main__":
    main()
