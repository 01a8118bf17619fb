"""Every defence of the paper by name: mitigation methods return a model, detection methods a detector."""

from __future__ import annotations

from dataclasses import replace

from core.defenses import (
    aug_ft,
    cft,
    fine_mixing,
    fine_pruning,
    fine_purifying,
    mbtsad,
    rap,
    reinit,
    strip,
)
from core.defenses.base import Defense, DefenseInputs, Detector

DEFENSES: dict[str, Defense] = {
    entry.name: entry
    for entry in (
        cft.DEFENSE,
        reinit.DEFENSE,
        fine_pruning.DEFENSE,
        aug_ft.DEFENSE,
        *(replace(mbtsad.DEFENSE, name=name, preset=preset) for name, preset in mbtsad.MBTSAD_VARIANTS.items()),
        fine_mixing.DEFENSE,
        fine_purifying.DEFENSE,
        strip.DEFENSE,
        rap.DEFENSE,
    )
}


def get_defense(name: str) -> Defense:
    """The registry entry of `name`; an unknown name raises with the valid ones."""
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; valid: {', '.join(DEFENSES)}")
    return DEFENSES[name]


__all__ = ["DEFENSES", "Defense", "DefenseInputs", "Detector", "get_defense"]
