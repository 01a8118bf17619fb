"""bench/gpu_check.py without a GPU: its arguments are checked at once, it stops with a clear line where CUDA is
missing, and its measuring and FLOP counting hold on a tiny model on the CPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
assert _spec is not None and _spec.loader is not None
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)  # a script, not a package module
_spec.loader.exec_module(gpu_check)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}  # no GPU, even on a GPU machine
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--steps", "0"), "--steps: must be at least 1"),
        (("--batch", "32", "-4"), "--batch: must be at least 1"),
        (("--peak-tflops", "-989"), "--peak-tflops: must be positive"),
        (("--length", "many"), "--length: invalid positive_int value"),
        (("--out", "."), "is a folder"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(args: tuple[str, ...], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_without_cuda_it_stops_with_one_clear_line(tmp_path: Path) -> None:
    done = run("--out", str(tmp_path / "gpu.md"))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a GPU machine"
    )
    assert not (tmp_path / "gpu.md").exists()


def test_peaks_by_device_name() -> None:
    assert gpu_check.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.peak_tflops("NVIDIA L40S") == 362.0
    assert gpu_check.peak_tflops("NVIDIA L4") == 121.0
    assert gpu_check.peak_tflops("NVIDIA A10G") == 125.0
    assert gpu_check.peak_tflops("Tesla T4") is None


def test_forward_flops_count_weights_and_attention() -> None:
    # 2 FLOPs per weight per token over 3 tokens, plus QK^T and AV: 2 * 2 * hidden * length^2 per layer
    assert gpu_check.forward_flops(matmul_weights=10, layers=2, hidden=4, length=3) == 2 * 10 * 3 + 2 * 2 * 2 * 4 * 9


def test_measure_times_both_steps_at_each_batch_on_a_tiny_model() -> None:
    config = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
        attn_implementation="eager",
    )
    model = BertForSequenceClassification(config)
    before = model.classifier.weight.detach().clone()
    cases = gpu_check.measure("tiny", model, batches=[2, 4], length=8, steps=1, warmup=0)
    assert [(c.step, c.batch) for c in cases] == [("fine-tune", 2), ("distil", 2), ("fine-tune", 4), ("distil", 4)]
    assert all(c.examples_per_s > 0 and c.tflops > 0 for c in cases)
    assert not torch.equal(model.classifier.weight, before)  # the steps trained the model
    # the same step time would give 4/3 the model FLOPs to distillation (the teacher's forward): check the ratio
    fine, distil = cases[0], cases[1]
    assert distil.tflops / distil.examples_per_s == pytest.approx(4 / 3 * fine.tflops / fine.examples_per_s)


def test_report_has_a_row_per_step_with_its_utilisation() -> None:
    args = gpu_check.parse_args(["--steps", "5"])
    cases = [gpu_check.Case("MiniLM", "fine-tune", 32, 1234.4, 98.9), gpu_check.Case("MiniLM", "distil", 32, 900, 50)]
    known = gpu_check.render(
        setup="NVIDIA H200", peak=989.0, peak_source="by name", cases=cases, args=args, sweep="61 s"
    )
    assert "NVIDIA H200; bf16 peak 989.0 TFLOP/s (by name); length 128, 5 timed steps per row." in known
    assert (
        "| MiniLM | fine-tune | 32 | 1234 | 98.9 | 10.0% |" in known
        and "| MiniLM | distil | 32 | 900 | 50.0 | 5.1% |" in known
    )
    assert known.rstrip().endswith("(four trials per GPU): 61 s")
    unknown = gpu_check.render(setup="Tesla T4", peak=None, peak_source="unknown", cases=cases, args=args, sweep=None)
    assert "| MiniLM | fine-tune | 32 | 1234 | 98.9 | ? |" in unknown and "Smoke sweep" not in unknown
