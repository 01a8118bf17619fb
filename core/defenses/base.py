"""What every defence receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.data import TextDataset
from core.models import Classifier


@dataclass(frozen=True)
class DefenseInputs:
    """The defender's side of the threat model: a suspect model and a little clean data."""

    suspect: Classifier  # M_b; defences work on a copy and never modify it
    clean: TextDataset  # D_c, the defender's clean training subset (a share r of the task's training set)
    dev: TextDataset  # clean dev data, the only data checkpoint and hyper-parameter selection may use
    seed: int  # every random choice of the defence derives from it
    pretrained: Classifier | None = None  # w_pre; only Fine-Mixing and Fine-Purifying need (and accept) it


class Detector(Protocol):
    """A detection defence: flags inputs it believes carry a trigger."""

    def flag(self, texts: list[str] | tuple[str, ...]) -> np.ndarray:
        """A boolean array, True where the input is rejected as poisoned."""
        ...


@dataclass(frozen=True)
class Defense:
    """A registry entry: how to run a defence and what it needs."""

    name: str
    kind: str  # "mitigation" returns a Classifier, "detection" returns a Detector
    run: Callable[[DefenseInputs, Any], Any]  # (inputs, config) -> Classifier | Detector
    config_type: type  # the frozen dataclass of its settings
    needs_pretrained: bool = False
    preset: Any = None  # the default settings when they are not config_type()'s (the MBTSAD ablations)

    def default_config(self) -> Any:
        """The settings a run uses unless told otherwise."""
        return self.config_type() if self.preset is None else self.preset
