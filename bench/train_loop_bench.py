"""One epoch of our `fit` against one epoch of `transformers.Trainer`, on the same model and the same D_a.

    pip install -e ".[bench]"    # accelerate, which Trainer needs; not a dependency of the project
    python bench/train_loop_bench.py [--fraction 0.2] [--limit N] [--repeats 1] [--no-bf16]

MiniLM (the offline default), D_a = 3 token-split copies of a seeded `--fraction` of SST-2's training split
(`--limit` caps D_a for a quick run), batch 32, length 48, lr 2e-5 with 10% warm-up and weight decay 0.01,
clipping at 1.0, bf16 autocast exactly where the project turns it on (`TrainConfig.use_bf16`). Each loop
trains its own copy of the same initial weights in this process: our `fit` (grouped by length, its
default), `Trainer` with random batches and `Trainer` with `group_by_length`, in `--repeats` rounds of the
three, each loop's fastest epoch counting, after an untimed warm-up pass at every batch shape. Nothing is
evaluated inside the timed part. Trainer is handed D_a already tokenised (its usual `map` step, not timed);
our `fit` tokenises inside the timed part. Prints examples per second and the ratios (targets: >= 1.6x
Trainer without grouping, >= 1.0x with it).

It also prints the ceiling of any batching: the warm-up times one whole training step (forward, backward,
AdamW) at every padded length, and an epoch's predicted compute is the sum of its batches' step times, for
random batches and for length-grouped ones. Their ratio is the most that removing padding can gain over
random batches on this model and machine, whatever the loop.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from core.batching import token_lengths, training_order
from core.data import TextDataset, load_sst2, resolve_data_dir
from core.defenses.aug_ft import AugFtConfig, augmented_set
from core.models import Classifier, default_classifier
from core.train import TrainConfig, cross_entropy_term, fit


def step_times(classifier: Classifier, config: TrainConfig, *, bf16: bool, repeats: int = 3) -> dict[int, float]:
    """Seconds of one training step (forward, backward, AdamW) at every padded length an epoch can meet, the
    fastest of `repeats` after an untimed one; it also warms every shape up, so no loop pays oneDNN's first calls."""
    model = copy.deepcopy(classifier.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, fused=True)
    times = {}
    for length in range(2, config.max_length + 1):
        ids = torch.full((config.batch_size, length), classifier.tokenizer.unk_token_id)
        labels = torch.zeros(len(ids), dtype=torch.long)
        runs = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            runs.append(time.perf_counter() - start)
        times[length] = min(runs[1:])
    return times


def predicted_epoch(lengths: list[int], times: dict[int, float], config: TrainConfig, *, grouped: bool) -> float:
    """Seconds of compute in one epoch: the sum of each batch's step time at its longest text (seed 0)."""
    order = training_order(
        lengths, batch_size=config.batch_size, generator=torch.Generator().manual_seed(0), group_by_length=grouped
    )
    return sum(times[max(lengths[i] for i in batch)] * len(batch) / config.batch_size for batch in order)


def ours(classifier: Classifier, data: TextDataset, config: TrainConfig) -> float:
    """Seconds for one epoch of our `fit`."""
    start = time.perf_counter()
    fit(classifier.model, classifier.tokenizer, data, config=config, terms=(cross_entropy_term(),))
    return time.perf_counter() - start


def peer(classifier: Classifier, data: TextDataset, config: TrainConfig, *, bf16: bool, grouped: bool) -> float:
    """Seconds for one epoch of `transformers.Trainer` with the same settings."""
    encoded = classifier.tokenizer(list(data.texts), truncation=True, max_length=config.max_length)
    rows = [
        {**{key: values[i] for key, values in encoded.items()}, "labels": label} for i, label in enumerate(data.labels)
    ]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=config.batch_size,
            num_train_epochs=config.epochs,
            learning_rate=config.lr,
            warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
            bf16=bf16,
            use_cpu=True,
            seed=config.seed,
            train_sampling_strategy="group_by_length" if grouped else "random",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=classifier.model,
            args=args,
            train_dataset=rows,
            data_collator=DataCollatorWithPadding(classifier.tokenizer),
        )
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.2, help="share of SST-2 train that D_a copies")
    parser.add_argument("--limit", type=int, default=None, help="at most this many D_a examples (quick runs)")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 even where the project would use bf16")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all three; each loop's fastest counts")
    args = parser.parse_args()

    train = load_sst2(resolve_data_dir()).train
    rng = np.random.default_rng(0)
    clean = train.subset(np.sort(rng.choice(len(train), size=round(args.fraction * len(train)), replace=False)))
    data = augmented_set(clean, AugFtConfig(), seed=0)
    if args.limit is not None:
        data = data.subset(range(min(args.limit, len(data))))
    base = default_classifier(seed=0)
    bf16 = False if args.no_bf16 else None
    config = TrainConfig(lr=2e-5, epochs=1, batch_size=32, max_length=48, bf16=bf16)
    use_bf16 = config.use_bf16(torch.device("cpu"))

    def fresh() -> Classifier:
        return Classifier(model=copy.deepcopy(base.model), tokenizer=base.tokenizer)

    runs = {
        "ours (fit, grouped by length)": lambda: ours(fresh(), data, config),
        "Trainer, random batches": lambda: peer(fresh(), data, config, bf16=use_bf16, grouped=False),
        "Trainer, group_by_length": lambda: peer(fresh(), data, config, bf16=use_bf16, grouped=True),
    }
    times_by_length = step_times(base, config, bf16=use_bf16)
    lengths = token_lengths(base.tokenizer, data.texts, max_length=config.max_length)
    random_epoch, grouped_epoch = (predicted_epoch(lengths, times_by_length, config, grouped=g) for g in (False, True))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # rounds alternate the loops, so a busy spell slows all of them alike
        for name, run in runs.items():
            times[name].append(run())
    seconds = {name: min(values) for name, values in times.items()}
    print(
        f"MiniLM, D_a {len(data)} examples, batch 32, length 48, {'bf16' if use_bf16 else 'fp32'}, "
        f"{torch.get_num_threads()} threads, one epoch each, fastest of {args.repeats}"
    )
    for name, value in seconds.items():
        print(f"  {name:32s} {value:7.1f} s  {len(data) / value:6.1f} ex/s")
    mine = seconds["ours (fit, grouped by length)"]
    print(f"ours / Trainer (random batches): {seconds['Trainer, random batches'] / mine:.2f}x (target >= 1.6)")
    print(f"ours / Trainer (group_by_length): {seconds['Trainer, group_by_length'] / mine:.2f}x (target >= 1.0)")
    print(
        f"ceiling of batching alone: predicted step compute {random_epoch:.1f} s with random batches, "
        f"{grouped_epoch:.1f} s grouped: {random_epoch / grouped_epoch:.2f}x "
        f"(step at length 48 / at length 24: {times_by_length[48] / times_by_length[24]:.2f}x)"
    )


if __name__ == "__main__":
    main()
