"""GPU check: examples/s and model FLOP utilisation of the project's own training steps, then the smoke sweep
with four trials sharing the GPU. About three minutes on one GPU.

    python bench/gpu_check.py [--out docs/gpu.md] [--peak-tflops 989] [--steps 10] [--no-sweep]

For MiniLM (the offline default) and a BERT-base-sized model built from `BertConfig()` (random weights, no
download), at each `--batch` (32 and 128) and `--length` 128 in bf16 autocast, it times `core.train.train_step`
with plain cross-entropy (fine-tuning, eq. 7) and with MBTSAD's distillation terms against a frozen teacher
(eq. 1), on random token ids. Model FLOPs per example count the matmuls only: 2 per weight per token plus
4 * layers * hidden * length per token for attention, times 3 for a training step (forward and backward), plus
one forward for the teacher. Utilisation is against the GPU's dense bf16 peak, from the table below by device
name or `--peak-tflops`. Then `python cli.py sweep --set resources.gpus_per_trial=0.25` runs the smoke grid
into a fresh store and its wall time is reported. `--out FILE` also writes the report as Markdown.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from any folder

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets; the first name contained wins.
PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
)
SWEEP_TIMEOUT_S = 240  # the smoke sweep on one GPU takes a minute or two; past this it is reported as timed out


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=positive_int, nargs="+", default=[32, 128], help="batch sizes")
    parser.add_argument("--length", type=positive_int, default=128, help="tokens per example")
    parser.add_argument("--steps", type=positive_int, default=10, help="timed steps per case (after 3 warm-up)")
    parser.add_argument("--peak-tflops", type=positive_float, help="the GPU's dense bf16 peak (default: by name)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the smoke sweep")
    parser.add_argument("--out", type=Path, help="also write the report here as Markdown")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; give a file name such as docs/gpu.md")
    return args


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its CUDA name, None for one not in the table."""
    return next((peak for name, peak in PEAK_TFLOPS if name in device_name), None)


def forward_flops(*, matmul_weights: int, layers: int, hidden: int, length: int) -> float:
    """Model FLOPs of one example's forward pass: the weight matmuls and the two attention matmuls per layer."""
    return 2.0 * matmul_weights * length + 4.0 * layers * hidden * length * length


@dataclass(frozen=True)
class Case:
    """One measured step."""

    model: str
    step: str  # fine-tune or distil
    batch: int
    examples_per_s: float
    tflops: float  # achieved model TFLOP/s


def measure(
    name: str, model: PreTrainedModel, *, batches: list[int], length: int, steps: int, warmup: int = 3
) -> list[Case]:
    """Fine-tuning and distillation steps of `model` at each batch size, on the model's device."""
    import torch

    from core.batching import Batch
    from core.train import cross_entropy_term, distillation_terms, train_step

    config = model.config
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embeddings" not in n)
    forward = forward_flops(
        matmul_weights=weights, layers=config.num_hidden_layers, hidden=config.hidden_size, length=length
    )
    teacher = copy.deepcopy(model).eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    methods = {
        "fine-tune": ((cross_entropy_term(),), None, 3 * forward),
        "distil": (distillation_terms(alpha=1.0, beta=1.0), teacher, 4 * forward),  # + the teacher's forward
    }
    cases = []
    for batch_size in batches:
        ids = torch.randint(
            config.vocab_size // 2, config.vocab_size, (batch_size, length), device=device, generator=generator
        )
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if config.type_vocab_size:
            inputs["token_type_ids"] = torch.zeros_like(ids)
        labels = torch.randint(0, config.num_labels, (batch_size,), device=device, generator=generator)
        batch = Batch(inputs=inputs, labels=labels)
        for step, (terms, teach, flops) in methods.items():
            for _ in range(warmup):  # kernels chosen, memory allocated
                train_step(model, optimizer, batch, terms, teacher=teach, bf16=True)
            started = time.perf_counter()
            for _ in range(steps):  # train_step returns floats, so each step has finished on the device when it returns
                train_step(model, optimizer, batch, terms, teacher=teach, bf16=True)
            seconds = (time.perf_counter() - started) / steps
            cases.append(Case(name, step, batch_size, batch_size / seconds, flops * batch_size / seconds / 1e12))
    return cases


def smoke_sweep(timeout_s: int) -> str:
    """The smoke sweep with four trials on one GPU, into a fresh store: its wall time and last line."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "cli.py", "sweep", "--run-dir", f"{folder}/run"]
        command += ["--set", "resources.gpus_per_trial=0.25", "--set", f"store={folder}/store"]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout_s} s"
        elapsed = time.perf_counter() - started
    lines = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
    status = "" if done.returncode == 0 else f", exit {done.returncode}"
    return f"{elapsed:.0f} s{status}; `{lines[-1]}`"


def render(
    *, setup: str, peak: float | None, peak_source: str, cases: list[Case], args: argparse.Namespace, sweep: str | None
) -> str:
    """The report as Markdown: the setup, one table row per measured step, and the sweep's line."""
    lines = [
        f"# GPU check, {datetime.date.today().isoformat()}",
        "",
        f"{setup}; bf16 peak {peak or '?'} TFLOP/s ({peak_source}); length {args.length}, "
        f"{args.steps} timed steps per row.",
        "",
        "| model | step | batch | examples/s | model TFLOP/s | MFU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case in cases:
        mfu = f"{100 * case.tflops / peak:.1f}%" if peak else "?"
        lines.append(
            f"| {case.model} | {case.step} | {case.batch} | {case.examples_per_s:.0f} | {case.tflops:.1f} | {mfu} |"
        )
    if sweep is not None:
        lines += ["", f"Smoke sweep, `resources.gpus_per_trial=0.25` (four trials per GPU): {sweep}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    import torch  # after the arguments, so a usage error answers at once

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a GPU machine")
    device_name = torch.cuda.get_device_name()
    peak = args.peak_tflops or peak_tflops(device_name)
    from transformers import BertConfig, BertForSequenceClassification

    from core.models import ATTENTION, default_classifier

    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global generator
        torch.manual_seed(0)
        bert_base = BertForSequenceClassification(BertConfig(num_labels=2, attn_implementation=ATTENTION))
    models = {"MiniLM": default_classifier(seed=0).model, "BERT-base (config)": bert_base}
    cases = []
    for name, model in models.items():
        cases += measure(name, model.cuda().train(), batches=args.batch, length=args.length, steps=args.steps)
        model.cpu()
    peak_source = "given" if args.peak_tflops else "by name" if peak else "unknown: pass --peak-tflops"
    setup = f"{device_name}; torch {torch.__version__}, CUDA {torch.version.cuda}; {platform.node()}"
    sweep = None if args.no_sweep else smoke_sweep(SWEEP_TIMEOUT_S)
    report = render(setup=setup, peak=peak, peak_source=peak_source, cases=cases, args=args, sweep=sweep)
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
