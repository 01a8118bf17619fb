"""The proxy objective of `tune --objective proxy` without Ray: MBTSAD run on M_b with the defender's own backdoor
planted (orchestration.artifacts.proxy_backdoored), scored on dev with the defender's trigger.

A defender knows neither the attacker's trigger nor its target, so what it can tune against is a backdoor it
plants itself: BadNets with its own words (core.poison.ProxyBackdoor) on D_c, trained at CFT's settings (the
spec's retraining stage). Nothing here reads the attack's configuration, M_b's poisoned sets or the test split.
"""

from __future__ import annotations

import torch

from core.evaluate import evaluate
from core.poison import ProxyBackdoor
from orchestration.artifacts import Backdoored, defender_clean, load_data, proxy_backdoored
from orchestration.spec import Cell, SweepSpec, dataset_spec, defense_setup
from orchestration.trial import mbtsad_student
from orchestration.uri_store import Store


def proxy_scores(
    spec: SweepSpec,
    cell: Cell,
    proxy: ProxyBackdoor,
    suspect: Backdoored,
    *,
    store: Store,
    device: torch.device,
) -> dict[str, float]:
    """The MBTSAD cell's dev scores against the defender's own backdoor, in percent: `asr` (the defender's trigger)
    and `cacc` of MBTSAD's student of the proxy model, and the proxy model's own (`reference_cacc`, the objective's
    reference, and `reference_asr`, whether the planted backdoor took). `suspect` is the cell's M_b; of it only the
    weights (and their key) are read."""
    spec = dataset_spec(spec, cell.dataset)
    splits = load_data(spec, cell.dataset)
    clean = defender_clean(spec, splits, cell.seed)
    planting = defense_setup(spec, Cell(cell.dataset, cell.attack, "cft", None, cell.seed)).train
    planted = proxy_backdoored(store, spec, suspect, proxy, planting, clean, splits.dev, cell.seed, device)
    config = defense_setup(spec, cell)
    student = mbtsad_student(store, spec, config, planted, clean, splits.dev, cell.seed, device)
    scores = evaluate(
        student,
        test=splits.dev,
        poisoned_test=planted.poisoned["dev"],
        target=proxy.target,
        max_length=spec.training.max_length,
    ).percents()
    own = planted.scores["dev"]
    return {"asr": scores["asr"], "cacc": scores["cacc"], "reference_cacc": own["cacc"], "reference_asr": own["asr"]}
