"""One MBTSAD distillation step against one cross-entropy fine-tuning step, as achieved FLOP/s against a matmul.

    python bench/train_step_bench.py [--model base-config|mpnet-base|minilm|tiny] [--length 64] [--batch 32]
                                     [--steps 5] [--threads 1] [--precision bf16 [fp32]]

`base-config` is a base-sized MPNet (all-mpnet-base-v2's `MPNetConfig`: 12 layers, hidden 768, 110 M parameters)
with random weights over the shared WordPiece vocabulary, so it runs without the download; `mpnet-base` is the
real one from the local Hugging Face cache (`cli.py fetch-model mpnet-base`). Same model, same batch of real
SST-2 sentences padded to `--length`, `core.train.train_step` as `fit` runs it (fused AdamW over every
parameter, the teacher prepared by `frozen_teacher`, eager attention).

Each step's FLOPs are counted once by `torch.utils.flop_counter.FlopCounterMode` (every matmul of the forward
and backward passes, the teacher's forward included), and its achieved FLOP/s is given as a share of a plain
matmul's rate in the same precision, measured in this process: a [batch*length, hidden] by [hidden, 4*hidden]
product (the FFN's shape), just before every timed step. Rounds alternate the methods (and the rate), so a
machine shared with other work slows each alike; the load average is printed before and after, and medians are
reported. `--threads 1` (the default) keeps the matmul and the steps on one core, so the share means the same
on a busy machine. Targets: a fine-tuning step at >= 50% of the bf16 matmul rate; a distillation step <= 1.2x a
fine-tuning step.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from transformers import MPNetConfig, MPNetForSequenceClassification, MPNetTokenizerFast

from core.batching import Batch
from core.data import load_sst2, resolve_data_dir
from core.models import ATTENTION, Classifier, default_classifier, tiny_classifier
from core.train import TrainConfig, _optimizer, cross_entropy_term, distillation_terms, frozen_teacher, train_step

TARGET_SHARE = 0.5  # a fine-tuning step's achieved FLOP/s against the bf16 matmul rate
TARGET_RATIO = 1.2  # a distillation step's time against a fine-tuning step's
MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
           torch.ops.aten.baddbmm.default}
METHODS = {"fine-tune (CE)": (cross_entropy_term(),), "MBTSAD distillation": distillation_terms(alpha=1.0, beta=1.0)}


def base_config_classifier(data_dir: Path, *, seed: int) -> Classifier:
    """A randomly initialised base-sized MPNet classifier (all-mpnet-base-v2's shape) over the shared vocabulary."""
    tokenizer = MPNetTokenizerFast(vocab=str(data_dir / "bert-base-uncased" / "vocab.txt"))
    config = MPNetConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=2,
        attn_implementation=ATTENTION,
    )  # MPNetConfig's defaults are mpnet-base's: 12 layers, hidden 768, 12 heads, FFN 3072, 514 positions
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Classifier(model=MPNetForSequenceClassification(config).eval(), tokenizer=tokenizer)


def open_model(name: str, data_dir: Path) -> Classifier:
    if name == "base-config":
        return base_config_classifier(data_dir, seed=0)
    if name == "mpnet-base":
        from orchestration.hub import open_classifier

        return open_classifier("mpnet-base", seed=0)
    if name == "tiny":
        return tiny_classifier(data_dir / "bert-base-uncased" / "vocab.txt", seed=0)
    return default_classifier(seed=0)


def matmul_rate(tokens: int, hidden: int, dtype: torch.dtype, *, seconds: float = 0.3) -> float:
    """FLOP/s of [tokens, hidden] @ [hidden, 4 hidden] in `dtype`, repeated for about `seconds` of CPU time."""
    a = torch.randn(tokens, hidden).to(dtype)
    b = torch.randn(hidden, 4 * hidden).to(dtype)
    torch.mm(a, b)  # oneDNN's first call for a shape sets it up
    count, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds or count < 3:
        torch.mm(a, b)
        count += 1
    return 2 * tokens * hidden * 4 * hidden * count / elapsed


@dataclass(frozen=True)
class Layout:
    """A matmul operand as the step handed it over: shape, strides (a transposed view has its own) and dtype."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


class MatmulRecorder(TorchDispatchMode):
    """Counts every matmul call of the code run inside it by operator and operand layouts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[tuple[object, tuple[object, ...]]] = Counter()

    def __torch_dispatch__(self, func: object, types: object, args: tuple = (), kwargs: dict | None = None) -> object:
        if func in MATMULS:
            layouts = tuple(
                Layout(tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args
            )
            self.calls[(func, layouts)] += 1
        return func(*args, **(kwargs or {}))


def counted(step: Callable[[], None]) -> tuple[int, Counter[tuple[object, tuple[object, ...]]]]:
    """Matmul FLOPs of one call of `step`, forward and backward, and its matmul calls."""
    with FlopCounterMode(display=False) as counter, MatmulRecorder() as recorder:
        step()
    return counter.get_total_flops(), recorder.calls


def matmul_seconds(calls: Counter[tuple[object, tuple[object, ...]]]) -> float:
    """CPU seconds of the recorded matmuls run alone, each on random operands of its own layout (median of 3)."""
    total = 0.0
    for (func, layouts), count in calls.items():
        args = [
            torch.empty_strided(x.shape, x.stride, dtype=x.dtype).normal_() if isinstance(x, Layout) else x
            for x in layouts
        ]
        func(*args)  # oneDNN's first call for a shape sets it up
        runs = []
        for _ in range(3):
            start = time.process_time()
            func(*args)
            runs.append(time.process_time() - start)
        total += count * statistics.median(runs)
    return total


def machine() -> str:
    """CPU model, its bf16 flags and the torch build, for the report."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16", "amx_tile") if flag in flags]
    return (
        f"{model}, {os.cpu_count()} cores, bf16 flags: {', '.join(bf16) or 'none'}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base-config", choices=("base-config", "mpnet-base", "minilm", "tiny"))
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method and precision")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for the matmul and the steps alike")
    parser.add_argument("--precision", nargs="+", default=["bf16"], choices=("bf16", "fp32"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data_dir = resolve_data_dir()
    classifier = open_model(args.model, data_dir)
    train = load_sst2(data_dir).train
    encoded = classifier.tokenizer(
        list(train.texts[: args.batch]), padding="max_length", truncation=True, max_length=args.length,
        return_tensors="pt",
    )
    batch = Batch(inputs=dict(encoded), labels=torch.tensor(train.labels[: args.batch]))
    model = classifier.model
    hidden, tokens = model.config.hidden_size, args.batch * args.length
    optimizer = _optimizer(tuple(model.parameters()), TrainConfig(lr=1e-5, epochs=1))  # fit's AdamW, fused
    teacher = copy.deepcopy(model).eval()
    precisions = [p == "bf16" for p in args.precision]
    teachers = {bf16: frozen_teacher(teacher, bf16=bf16) for bf16 in precisions}  # as `fit` prepares it

    def step(name: str, bf16: bool) -> Callable[[], None]:
        teach = teachers[bf16] if name == "MBTSAD distillation" else None
        return lambda: train_step(model, optimizer, batch, METHODS[name], teacher=teach, bf16=bf16)

    cases = [(name, bf16) for bf16 in precisions for name in METHODS]
    counts = {case: counted(step(*case)) for case in cases}  # also warms every case up
    flops = {case: flop for case, (flop, _) in counts.items()}
    alone = {case: matmul_seconds(calls) for case, (_, calls) in counts.items()}
    times: dict[tuple[str, bool], list[float]] = {case: [] for case in cases}  # this process's CPU seconds
    walls: dict[tuple[str, bool], list[float]] = {case: [] for case in cases}  # wall-clock seconds
    rates: dict[bool, list[float]] = {bf16: [] for bf16 in precisions}
    load_before = os.getloadavg()
    for _ in range(args.steps):
        for case in cases:
            rates[case[1]].append(matmul_rate(tokens, hidden, torch.bfloat16 if case[1] else torch.float32))
            run = step(*case)
            start, wall = time.process_time(), time.perf_counter()
            run()
            times[case].append(time.process_time() - start)
            walls[case].append(time.perf_counter() - wall)
    load_after = os.getloadavg()

    print(f"machine: {machine()}")
    print(
        f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} cores: above {args.threads} other work "
        "shared the machine)"
    )
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model {args.model} ({type(model).__name__}, {params / 1e6:.1f} M parameters), batch {args.batch}, "
        f"length {args.length}, {args.steps} timed steps each (medians)"
    )
    median = {case: statistics.median(values) for case, values in times.items()}
    for bf16 in precisions:
        label = "bf16" if bf16 else "fp32"
        rate = statistics.median(rates[bf16])
        print(f"  {label} matmul [{tokens}, {hidden}] x [{hidden}, {4 * hidden}]: {rate / 1e12:.3f} TFLOP/s")
        for name in METHODS:
            seconds = median[(name, bf16)]
            achieved = flops[(name, bf16)] / seconds
            wall = statistics.median(walls[(name, bf16)])
            print(
                f"  {label} {name:20s} {seconds:.3f} CPU-s/step ({wall:.3f} s wall)  {flops[(name, bf16)] / 1e12:.3f} "
                f"TFLOP counted  {achieved / 1e12:.3f} TFLOP/s = {achieved / rate:.0%} of the matmul"
                + (f" (target >= {TARGET_SHARE:.0%})" if bf16 and name == "fine-tune (CE)" else "")
            )
            matmuls = alone[(name, bf16)]
            print(
                f"  {'':4s} {'':20s} its matmuls alone, each timed on its own shapes: {matmuls:.3f} CPU-s "
                f"({flops[(name, bf16)] / matmuls / rate:.0%} of the rate); everything else: {seconds - matmuls:.3f}"
                " CPU-s"
            )
        ratio = median[("MBTSAD distillation", bf16)] / median[("fine-tune (CE)", bf16)]
        flop_ratio = flops[("MBTSAD distillation", bf16)] / flops[("fine-tune (CE)", bf16)]
        print(
            f"  {label} distillation / fine-tuning: {ratio:.2f}x time (target <= {TARGET_RATIO}), "
            f"{flop_ratio:.2f}x FLOPs"
        )


if __name__ == "__main__":
    main()
