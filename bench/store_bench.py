"""What the artifact store saves, and what running trials side by side buys.

    python bench/store_bench.py                 # example counts of the paper, cpu and smoke grids (seconds)
    python bench/store_bench.py --timing        # also: the smoke sweep, two 1-CPU trials at once vs one (minutes)

Counts: the training examples (forward and backward passes, distillation included) each grid
processes when its backdoored models M_b, TS-FT and CFT teachers and CWEA masked-LM heads are built once
in the store, against every trial computing its own from scratch. The counts come from each trial's
own settings (`orchestration.spec`) and the real dataset sizes; ratio searches (Fine-Mixing,
Fine-Purifying) are counted at their worst case, every candidate tried. Forward-only work
(evaluation, dev selection, STRIP, pruning search) is counted apart and feeds the time estimate,
which uses SPEC's measured throughput for the grid's model on 2 cores (MiniLM: training 41, distillation
29, inference 173 examples/s at length 64; length 32 is 1.7x faster, interpolated linearly; longer
inputs are taken as proportionally slower).

Timing: the smoke sweep twice on a local Ray with 2 CPUs, each with a fresh store, once with
`max_concurrent=1` and once with `2`; the ratio is the wall time of two at once over one at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from core.data import Splits, TextDataset, clean_subset
from core.poison import poison_training_set
from orchestration.artifacts import load_data
from orchestration.presets import preset
from orchestration.spec import (
    MBTSAD_FAMILY,
    Cell,
    SweepSpec,
    apply_settings,
    attack_setup,
    cells,
    dataset_spec,
    defense_setup,
)

# SPEC's throughput table, examples/s on 2 cores at length 64: (train, distil, inference).
THROUGHPUT = {"minilm": (41.0, 29.0, 173.0), "tiny": (392.0, 325.0, 2978.0), "bert-base": (6.0, 4.7, 27.0)}
SHARED = ("backdoored", "teacher", "cft", "mlm")  # what the store builds once per key


@dataclasses.dataclass
class Work:
    """Examples processed, by kind of pass."""

    train: float = 0.0  # forward + backward
    distil: float = 0.0  # student forward + backward, teacher forward
    infer: float = 0.0  # forward only

    def __add__(self, other: Work) -> Work:
        return Work(self.train + other.train, self.distil + other.distil, self.infer + other.infer)

    def __mul__(self, times: float) -> Work:
        return Work(self.train * times, self.distil * times, self.infer * times)

    def hours(self, model: str, length: int) -> float:
        """Hours on 2 CPU cores at SPEC's measured throughput of `model` at `length` tokens."""
        train, distil, infer = THROUGHPUT[model]
        speed = 1 + 0.7 * (64 - length) / 32 if length <= 64 else 64 / length  # 1.7x at 32; past 64, by length
        return (self.train / train + self.distil / distil + self.infer / infer) / speed / 3600


def fit(n: int, epochs: int, dev: int, *, distil: bool = False) -> Work:
    """A training run: n examples per epoch, clean dev scored after each epoch."""
    return Work(train=0 if distil else n * epochs, distil=n * epochs if distil else 0, infer=dev * epochs)


def attack_work(spec: SweepSpec, attack: str, splits: Splits) -> Work:
    """Building M_b: the backdoor training (EP: a clean model, then the row), its test and dev evaluation."""
    config = attack_setup(spec, attack)
    poisoned = poison_training_set(splits.train, config.poison, np.random.default_rng(0))
    dev, test = len(splits.dev), len(splits.test)
    scoring = 2 * dev  # the attacker scores clean and poisoned dev (about half of dev) each epoch
    evaluation = Work(infer=1.5 * (test + dev))
    if attack == "ep":
        clean = fit(len(splits.train), config.clean_train.epochs, dev)
        return clean + fit(len(poisoned.poisoned), config.train.epochs, scoring) + evaluation
    return fit(len(poisoned.data), config.train.epochs, scoring) + evaluation


def trial_work(spec: SweepSpec, cell: Cell, splits: Splits, clean: TextDataset, backdoor: Work) -> Counter[str]:
    """One trial's work, keyed by what produced it: its own, or an artifact it needs (M_b's is `backdoor`)."""
    dev, test, n_clean = len(splits.dev), len(splits.test), len(clean)
    work: defaultdict[str, Work] = defaultdict(Work, backdoored=backdoor)
    if cell.defense == "none":
        return _flatten(work)
    work["own"] = Work(infer=1.5 * test)
    config = defense_setup(spec, cell)
    if cell.defense in ("ts-ft", "aug-ft", *MBTSAD_FAMILY):
        retrain = config if cell.defense in ("ts-ft", "aug-ft") else config.teacher
        d_a = retrain.copies * n_clean
        teacher = fit(d_a, retrain.train.epochs, dev)
        if retrain.augmentation == "cwea":
            work["mlm"] = Work(train=spec.mlm.steps * spec.mlm.batch_size)
        if cell.defense in ("ts-ft", "aug-ft"):
            work["teacher" if cell.defense == "ts-ft" else "own"] += teacher
        else:
            if cell.defense != "cd":  # NAD and MBTSAD-CFT-teacher read the CFT row's model
                if config.teacher_data == "clean":
                    work["cft"] = fit(n_clean, retrain.train.epochs, dev)
                else:
                    work["teacher"] = teacher
            distilled = n_clean if config.distil_data == "clean" else d_a
            work["own"] += fit(distilled, config.train.epochs, dev, distil=cell.defense != "cd")
    elif cell.defense == "strip":
        work["own"] += Work(infer=config.repeat * (dev + 1.5 * test))
    elif cell.defense == "rap":
        construct = dev // 2
        work["own"] += Work(train=construct * config.train.epochs, infer=2 * (construct + 1.5 * test))
    elif cell.defense == "cft":
        work["cft"] = fit(n_clean, config.train.epochs, dev)
    elif cell.defense == "reinit":
        work["own"] += fit(n_clean, config.cft.train.epochs, dev)
    elif cell.defense == "fine-pruning":
        steps = round(1 / config.step)
        work["own"] += fit(n_clean, config.cft.train.epochs, dev) + Work(infer=n_clean + steps * dev)
    elif cell.defense in ("fine-mixing", "fine-purifying"):
        grid = config.rho_grid if cell.defense == "fine-mixing" else config.reset_grid
        search = fit(n_clean, config.cft.train.epochs, dev) + Work(infer=dev)
        fisher = Work(train=min(n_clean, config.fisher_samples)) if cell.defense == "fine-purifying" else Work()
        work["own"] += search * len(grid) + fisher
    return _flatten(work)


def _flatten(work: dict[str, Work]) -> Counter[str]:
    return Counter(
        {f"{kind}.{field}": getattr(w, field) for kind, w in work.items() for field in ("train", "distil", "infer")}
    )


def grid_work(spec: SweepSpec) -> tuple[Work, Work, int]:
    """(with the store, from scratch, trials): the store counts each artifact once per key."""
    seen: set[tuple[str, ...]] = set()
    shared, scratch = Work(), Work()
    plan = cells(spec)
    cleans: dict[tuple[str, int], TextDataset] = {}
    backdoors: dict[tuple[str, str], Work] = {}
    for cell in plan:
        own = dataset_spec(spec, cell.dataset)  # the dataset's sizes and training settings
        splits = load_data(own, cell.dataset)
        if (cell.dataset, cell.seed) not in cleans:
            rng = np.random.default_rng(cell.seed)
            cleans[cell.dataset, cell.seed] = clean_subset(splits.train, own.data.clean_fraction, rng)
        if (cell.dataset, cell.attack) not in backdoors:
            backdoors[cell.dataset, cell.attack] = attack_work(own, cell.attack, splits)
        parts = trial_work(own, cell, splits, cleans[cell.dataset, cell.seed], backdoors[cell.dataset, cell.attack])
        for kind in ("own", *SHARED):
            work = Work(*(parts[f"{kind}.{f}"] for f in ("train", "distil", "infer")))
            scratch += work
            # M_b and the teachers are keyed by (dataset, attack, seed); the MLM head by (dataset, seed)
            key = (kind, cell.dataset, cell.attack if kind != "mlm" else "", str(cell.seed))
            if kind == "own" or key not in seen:
                shared += work
                seen.add(key)
    return shared, scratch, len(plan)


def counts(name: str, spec: SweepSpec) -> None:
    """Print a grid's training examples with and without the store, and the time estimate, per dataset."""
    model = "bert-base" if name == "paper" else spec.model
    for dataset in spec.datasets:
        shared, scratch, trials = grid_work(apply_settings(spec, {"datasets": [dataset]}))
        length = dataset_spec(spec, dataset).training.max_length
        trained, scratch_trained = shared.train + shared.distil, scratch.train + scratch.distil
        print(
            f"{name} {dataset} (length {length}): {trials} trials; training examples {trained:,.0f} with the store, "
            f"{scratch_trained:,.0f} from scratch ({scratch_trained / trained:.1f}x); "
            f"inference examples {shared.infer:,.0f} vs {scratch.infer:,.0f}; "
            f"estimated {shared.hours(model, length):.1f} h vs {scratch.hours(model, length):.1f} h on 2 CPU cores"
        )


def timing() -> None:
    """Time the smoke sweep at one and at two trials at once, each with a fresh store."""
    from orchestration.sweep import run_sweep

    walls = {}
    for concurrent in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            spec = apply_settings(preset("smoke"), {"store": f"{folder}/store", "resources.max_concurrent": concurrent})
            started = time.perf_counter()
            outcome = run_sweep(spec, Path(folder) / "run")
            walls[concurrent] = wall = time.perf_counter() - started
            print(f"smoke sweep, {concurrent} trial(s) at once: {outcome.ok}/{outcome.total} ok in {wall:.1f} s")
    print(f"two 1-CPU trials at once / one at a time: {walls[2] / walls[1]:.2f} of the wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing", action="store_true", help="also time the smoke sweep at 1 and 2 trials at once")
    args = parser.parse_args()
    for name in ("paper", "cpu", "smoke"):
        counts(name, preset(name))
    counts("cpu", apply_settings(preset("cpu"), {"datasets": ["imdb"]}))  # the IMDb half `cpu` adds on request
    if args.timing:
        timing()


if __name__ == "__main__":
    main()
