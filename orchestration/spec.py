"""Experiment specs as data: which cells a sweep runs and with what settings, overridable by dotted path.

A `SweepSpec` composes the settings `core/` needs; `cells` expands it into one `Cell` per trial. A spec
is built from a preset (`orchestration/presets.py`), then a YAML file, then `--set key=value` pairs;
every step rejects unknown keys and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.attacks import ATTACKS, AttackConfig, attack_config
from core.augment import AUGMENTATIONS
from core.defenses import DEFENSES, get_defense
from core.defenses.mbtsad import MbtsadConfig
from core.defenses.rap import RapConfig
from core.defenses.strip import StripConfig
from core.losses import ATTENTION_AXES
from core.mlm import MlmHeadConfig
from orchestration.overrides import apply_overrides, convert, parse_value, with_training

# Rows of Tables I, II and IV (every table-row defence a sweep knows; RUN_ORDER below says when each runs).
TABLE_DEFENSES = (
    "none",
    "ts-ft",
    "mbtsad",
    "mbtsad-no-att",
    "mbtsad-no-hid",
    "cd",
    "mbtsad-cft-teacher",
    "strip",
    "rap",
    "cft",
    "nad",
    "reinit",
    "fine-pruning",
    "fine-mixing",
    "fine-purifying",
)
# The order a group's trials run in: `none` and `ts-ft` build M_b and the teacher the others read; then
# Table II (MBTSAD against the baselines, the paper's main comparison; `cft` builds the CFT teacher that NAD and
# MBTSAD-CFT-teacher read, and those two answer what token splitting adds over NAD), Table IV's ablations and
# Table I's detectors, so a sweep stopped mid-run holds the headline comparison first.
RUN_ORDER = (
    "none",
    "ts-ft",
    "mbtsad",
    "cft",
    "nad",
    "mbtsad-cft-teacher",
    "reinit",
    "fine-pruning",
    "fine-mixing",
    "fine-purifying",
    "mbtsad-no-att",
    "mbtsad-no-hid",
    "cd",
    "strip",
    "rap",
)
# rows carrying alpha and beta (and any tuned distillation setting): MBTSAD's variants (core.defenses.mbtsad)
MBTSAD_FAMILY = frozenset({"mbtsad", "mbtsad-no-att", "mbtsad-no-hid", "cd", "mbtsad-cft-teacher", "nad"})
NO_AUGMENTATION = frozenset({"nad"})  # MBTSAD variants that read no D_a: their cells' augmentation is null
TABLE3_AUGMENTATIONS = ("eda", "aeda", "cwea", "add_trig")  # Table III's aug-ft rows; its TS row is ts-ft
EVALUATION_SPLITS = ("test", "dev")  # the tables score on test; tuning alpha and beta only ever on dev


@dataclass(frozen=True)
class DataSpec:
    """Which examples a sweep uses."""

    max_train: int | None = None  # the first N training samples (None: all); the attacker poisons these
    max_dev: int | None = None  # the first N clean dev samples, used for every checkpoint selection
    max_test: int | None = None  # the first N test samples
    max_words: int | None = None  # each text cut to its first N words before poisoning (None: whole texts)
    clean_fraction: float = 0.2  # r: D_c is this stratified share of the (clean) training set


@dataclass(frozen=True)
class Stage:
    """Learning rate and epochs of one kind of training run; None keeps the method's own (the paper's) value."""

    lr: float | None = None
    epochs: int | None = None  # with patience: the most epochs it trains
    patience: int | None = None  # early stopping on the run's selection score (clean dev accuracy for defences)

    def fields(self) -> dict[str, Any]:
        """The settings this stage changes (the ones not None)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class TrainingSpec:
    """Settings shared by every training run of the sweep; a model trained from scratch needs other rates."""

    max_length: int = 128  # truncation everywhere, evaluation included (SST-2 fits in 64)
    batch_size: int = 32  # the paper's
    bf16: bool | None = None  # None: bf16 autocast only where the hardware has native bf16
    group_by_length: bool = True  # length-grouped training batches (core/batching.py); False: random ones
    attack: Stage = Stage()  # BadNets/LWP/AddSent backdoor training, EP's clean model (EP's row update keeps its lr)
    retrain: Stage = Stage()  # CFT and every defence's CFT step, TS-FT, aug-ft and the MBTSAD teacher
    distil: Stage = Stage()  # the MBTSAD family's distillation


@dataclass(frozen=True)
class Resources:
    """What each trial asks of the cluster and how failures are handled."""

    cpus_per_trial: float = 1.0  # two 1-CPU trials side by side outrun one 2-CPU trial (SPEC)
    gpus_per_trial: float | None = None  # None: 1 where the cluster has GPUs, else 0; fractions share a GPU
    max_concurrent: int | None = None  # None: as many trials as the resources allow
    max_failures: int = 2  # retries of a failed trial (a lost node, an out-of-memory kill) before it fails


@dataclass(frozen=True)
class SweepSpec:
    """One experiment grid: (dataset, attack, defence, seed) cells on one model, and where things live."""

    name: str  # the run's name; the default run folder is runs/<name>
    model: str = "minilm"  # tiny, minilm, or a local Hugging Face model folder (the attacker fine-tunes it)
    datasets: tuple[str, ...] = ("sst2",)  # sst2, sst2-glue, imdb, or a folder of train/dev/test files
    attacks: tuple[str, ...] = ("badnets", "lwp", "ep")
    defenses: tuple[str, ...] = TABLE_DEFENSES  # rows of Tables I, II, IV (none: M_b's own scores)
    augmentations: tuple[str, ...] = TABLE3_AUGMENTATIONS  # Table III: an aug-ft cell per augmentation
    augmentation_datasets: tuple[str, ...] = ("sst2",)  # the datasets Table III covers (the paper: SST-2)
    seeds: tuple[int, ...] = (0,)
    target: int = 1  # the backdoor's target label
    attack_profile: str = "project"  # the attacks' settings: project, or openbackdoor (the paper's; core/attacks.py)
    data: DataSpec = DataSpec()
    training: TrainingSpec = TrainingSpec()
    mlm: MlmHeadConfig = field(default_factory=MlmHeadConfig)  # CWEA's MLM head, fitted on the frozen encoder
    attack_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per attack: {dotted path: value}
    defense_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per defence: {dotted path: value}
    # per dataset: spec settings (dotted, as `--set`) for that dataset's cells only, e.g. IMDb's truncation
    dataset_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    best_params: str | None = None  # alpha/beta JSON written by `tune`; None: <run dir>/../best_params.json if present
    evaluate_on: str = "test"  # test (the tables) or dev (tuning never sees test)
    store: str | None = None  # artifact store: a folder or a storage URI (s3://...); None: <run dir>/../store
    data_dir: str | None = None  # the shared data folder; None: $MBTSAD_DATA or ../shared/data
    resources: Resources = Resources()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # `--set datasets=imdb` or a YAML list: stored as a tuple either way
            value = getattr(self, f.name)
            if f.type.startswith("tuple") and isinstance(value, str | list):
                object.__setattr__(self, f.name, (value,) if isinstance(value, str) else tuple(value))
        if not all(isinstance(seed, int) for seed in self.seeds):
            raise ValueError(f"seeds must be integers, got {self.seeds}")
        for name, values, valid in (
            ("attacks", self.attacks, tuple(ATTACKS)),
            ("defenses", self.defenses, TABLE_DEFENSES),
            ("augmentations", self.augmentations, tuple(a for a in AUGMENTATIONS if a != "ts")),
        ):
            unknown = [v for v in values if v not in valid]
            if unknown:
                hint = " (TS is the ts-ft row)" if "ts" in unknown else ""
                raise ValueError(f"unknown {name} {unknown}{hint}; valid: {', '.join(valid)}")
        if self.evaluate_on not in EVALUATION_SPLITS:
            raise ValueError(f"evaluate_on must be one of {EVALUATION_SPLITS}, got {self.evaluate_on!r}")
        if not self.datasets or not self.attacks or not self.seeds:
            raise ValueError("a sweep needs at least one dataset, attack and seed")
        if self.data.max_words is not None and (not isinstance(self.data.max_words, int) or self.data.max_words < 1):
            raise ValueError(f"data.max_words must be a positive integer or null, got {self.data.max_words!r}")
        if not 0.0 < self.data.clean_fraction <= 1.0:
            raise ValueError(f"data.clean_fraction must lie in (0, 1], got {self.data.clean_fraction}")
        for defense in self.defense_settings:
            if defense not in DEFENSES:
                raise ValueError(f"unknown defense {defense!r} in defense_settings; valid: {', '.join(DEFENSES)}")
        for dataset, settings in self.dataset_settings.items():
            if fixed := sorted(k for k in settings if k.partition(".")[0] not in PER_DATASET):
                raise ValueError(
                    f"dataset_settings.{dataset}: {', '.join(fixed)} cannot differ per dataset; "
                    f"valid: {', '.join(PER_DATASET)}"
                )
            try:
                dataset_spec(self, dataset)  # builds and checks the dataset's configs too
            except ValueError as err:
                raise ValueError(f"dataset_settings.{dataset}: {err}") from None
        self._build_configs()

    def _build_configs(self) -> None:
        """Build every attack and defence config a cell of this spec uses, so that a bad setting (an unknown
        key, a wrong type, a value a config rejects) fails when the spec is built, not in a trial."""
        for attack in dict.fromkeys((*self.attacks, *self.attack_settings)):
            try:
                attack_setup(self, attack)  # an unknown attack or setting fails with the valid ones
            except ValueError as err:
                raise ValueError(f"attack {attack}: {err}") from None
        defenses = dict.fromkeys(d for d in (*self.defenses, *self.defense_settings) if d != "none")
        shapes = [table_cell("", "", d, 0, {}) for d in defenses]  # a config depends on no dataset, attack or seed
        for cell in shapes + [Cell("", "", "aug-ft", a, 0) for a in self.augmentations]:
            try:
                defense_setup(self, cell)
            except ValueError as err:
                raise ValueError(f"defense {cell.defense}: {err}") from None


@dataclass(frozen=True)
class Cell:
    """One trial: a (dataset, attack, defence, augmentation, seed) cell with its eq. 1 weights and, when tuned,
    its distillation's rate, epochs and attention axis (None: the spec's)."""

    dataset: str
    attack: str
    defense: str  # a TABLE_DEFENSES name or aug-ft
    augmentation: str | None  # ts for ts-ft and the MBTSAD family (NAD: None), Table III's for aug-ft, else None
    seed: int
    alpha: float | None = None  # MBTSAD family only
    beta: float | None = None  # MBTSAD family only
    distil_lr: float | None = None  # MBTSAD family only
    distil_epochs: int | None = None  # MBTSAD family only
    attention_axis: str | None = None  # MBTSAD family only: eq. 4's axis (core.losses.ATTENTION_AXES)
    tuned_by: str | None = None  # MBTSAD family only: how best_params chose its values (`tune`'s label), not a setting


# what best_params.json may set, with its type; `tuned_by` labels how `tune` chose the others (oracle, proxy, ...)
TUNED_FIELDS = {
    "alpha": float,
    "beta": float,
    "distil_lr": float,
    "distil_epochs": int,
    "attention_axis": str,
    "tuned_by": str,
}


# ------------------------------------------------------------------------------------- settings


def attack_setup(spec: SweepSpec, name: str) -> AttackConfig:
    """The attack's config with the sweep's training settings and its own overrides."""
    training = spec.training
    config = with_training(
        attack_config(name, spec.attack_profile),
        max_length=training.max_length,
        batch_size=training.batch_size,
        bf16=training.bf16,
        group_by_length=training.group_by_length,
    )
    stage = training.attack.fields()
    if name == "ep":  # EP trains a clean model first, then only one embedding row at its own (high) rate
        config = dataclasses.replace(
            config,
            clean_train=dataclasses.replace(config.clean_train, **stage),
            train=dataclasses.replace(config.train, **{k: v for k, v in stage.items() if k != "lr"}),
        )
    else:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, **stage))
    config = dataclasses.replace(config, poison=dataclasses.replace(config.poison, target=spec.target))
    return apply_overrides(config, spec.attack_settings.get(name, {}))


def defense_setup(spec: SweepSpec, cell: Cell) -> Any:
    """The defence's config for a cell: sweep training settings, per-defence overrides, then the cell's own."""
    training = spec.training
    name = "ts-ft" if cell.defense == "aug-ft" else cell.defense
    config = get_defense(name).default_config()
    shared = {
        "max_length": training.max_length,
        "batch_size": training.batch_size,
        "bf16": training.bf16,
        "group_by_length": training.group_by_length,
    }
    if isinstance(config, StripConfig):
        config = dataclasses.replace(config, max_length=training.max_length, bf16=training.bf16)
    elif isinstance(config, RapConfig):  # RAP trains one embedding row at its own rate
        config = dataclasses.replace(
            with_training(
                config, max_length=training.max_length, bf16=training.bf16, group_by_length=training.group_by_length
            ),
            target=spec.target,
        )
    elif isinstance(config, MbtsadConfig):
        config = dataclasses.replace(
            config,
            teacher=with_training(config.teacher, **shared, **training.retrain.fields()),
            train=dataclasses.replace(config.train, **shared, **training.distil.fields()),
        )
    else:
        config = with_training(config, **shared, **training.retrain.fields())
    config = apply_overrides(config, spec.defense_settings.get(name, {}))
    if cell.defense == "aug-ft":
        config = dataclasses.replace(config, augmentation=cell.augmentation)
    if cell.defense in MBTSAD_FAMILY:
        train = {"lr": cell.distil_lr, "epochs": cell.distil_epochs}
        config = dataclasses.replace(
            config,
            alpha=config.alpha if cell.alpha is None else cell.alpha,
            beta=config.beta if cell.beta is None else cell.beta,
            attention_axis=config.attention_axis if cell.attention_axis is None else cell.attention_axis,
            train=dataclasses.replace(config.train, **{k: v for k, v in train.items() if v is not None}),
        )
    return config


# ------------------------------------------------------------------------------------- the grid


def read_best_params(path: Path | None) -> dict[str, dict[str, Any]]:
    """The tuned values (TUNED_FIELDS) per `<dataset>/<attack>` or `<attack>` from the JSON `tune` writes; {}
    without a file."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and set(v) <= set(TUNED_FIELDS) for v in data.values()
    ):
        raise ValueError(
            f'{path}: expected {{"<dataset>/<attack>" or "<attack>": {{"alpha": a, "beta": b, ...}}}} '
            f"with keys among {', '.join(TUNED_FIELDS)}"
        )
    values = {
        key: {name: convert(value, TUNED_FIELDS[name], f"{path}: {key}.{name}") for name, value in tuned.items()}
        for key, tuned in data.items()
    }
    for key, tuned in values.items():
        if tuned.get("attention_axis") not in (None, *ATTENTION_AXES):
            raise ValueError(f"{path}: {key}.attention_axis: expected one of {', '.join(ATTENTION_AXES)}")
    return values


def table_cell(dataset: str, attack: str, defense: str, seed: int, tuned: Mapping[str, Any]) -> Cell:
    """A Table I, II or IV cell; the MBTSAD family carries alpha and beta (1.0 unless tuned) and any other
    tuned value."""
    family = defense in MBTSAD_FAMILY
    return Cell(
        dataset=dataset,
        attack=attack,
        defense=defense,
        augmentation="ts" if (family and defense not in NO_AUGMENTATION) or defense == "ts-ft" else None,
        seed=seed,
        alpha=tuned.get("alpha", 1.0) if family else None,
        beta=tuned.get("beta", 1.0) if family else None,
        **(
            {name: tuned.get(name) for name in ("distil_lr", "distil_epochs", "attention_axis", "tuned_by")}
            if family
            else {}
        ),
    )


def dataset_spec(spec: SweepSpec, dataset: str) -> SweepSpec:
    """The spec a dataset's cells run under: the sweep's settings with `dataset_settings[dataset]` applied (and
    no per-dataset settings left, so applying it twice changes nothing)."""
    if not spec.dataset_settings:
        return spec
    return apply_settings(dataclasses.replace(spec, dataset_settings={}), spec.dataset_settings.get(dataset, {}))


def cells(spec: SweepSpec, best_params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Cell]:
    """Every trial of the grid, round-robin over (seed, dataset, attack) groups so concurrent trials build
    different backdoored models; in a group the rows run in RUN_ORDER, then Table III's retraining runs.
    A dataset's rows are its own `defenses` (dataset_settings may narrow them)."""
    best = best_params or {}
    groups: list[list[Cell]] = []
    for seed in spec.seeds:
        for dataset in spec.datasets:
            order = [d for d in RUN_ORDER if d in dataset_spec(spec, dataset).defenses]
            for attack in spec.attacks:
                tuned = {**best.get(attack, {}), **best.get(f"{dataset}/{attack}", {})}
                table3 = spec.augmentations if dataset in spec.augmentation_datasets else ()
                groups.append(
                    [table_cell(dataset, attack, d, seed, tuned) for d in order]
                    + [Cell(dataset, attack, "aug-ft", a, seed) for a in table3]
                )
    ordered = []
    for position in range(max(len(g) for g in groups)):
        ordered += [group[position] for group in groups if position < len(group)]
    return ordered


# ------------------------------------------------------------------------------------- building a spec


def spec_to_dict(spec: SweepSpec) -> dict[str, Any]:
    """A plain, JSON- and YAML-safe mapping of the spec (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def spec_from_dict(data: Mapping[str, Any]) -> SweepSpec:
    """The spec a `spec_to_dict` mapping describes; unknown keys fail with the valid ones."""
    return apply_settings(SweepSpec(name=str(data.get("name", "sweep"))), data)


# mappings keyed by method (or dataset) name, not dataclasses
SETTINGS_FIELDS = ("attack_settings", "defense_settings", "dataset_settings")
# what dataset_settings may change: the data's sizes, the training runs, the rows and the methods' settings
PER_DATASET = ("data", "training", "defenses", "attack_settings", "defense_settings", "mlm")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; a `*_settings.<method>` mapping stays whole (its keys are the method's)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path in SETTINGS_FIELDS:
            flat.update({f"{path}.{name}": settings for name, settings in value.items()})
        elif isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def apply_settings(spec: SweepSpec, settings: Mapping[str, Any]) -> SweepSpec:
    """`spec` with nested or dotted settings applied; `attack_settings.<name>.<path>` adds to that method's."""
    plain: dict[str, Any] = {}
    methods = {name: {k: dict(v) for k, v in getattr(spec, name).items()} for name in SETTINGS_FIELDS}
    for key, value in flatten(settings).items():
        head, _, rest = key.partition(".")
        method, _, path = rest.partition(".")
        if head not in SETTINGS_FIELDS:
            plain[key] = value
        elif path:
            methods[head].setdefault(method, {})[path] = value
        elif method and isinstance(value, Mapping):
            methods[head].setdefault(method, {}).update(flatten(value))
        elif not method and isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            methods[head] = {name: flatten(v) for name, v in value.items()}
        else:
            raise ValueError(f"{key}: expected a mapping of settings, got {value!r}")
    spec = apply_overrides(spec, plain)
    return dataclasses.replace(spec, **methods)


def load_settings_file(path: Path) -> dict[str, Any]:
    """A YAML (or JSON) file of settings, nested or dotted; errors name the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def read_settings(config_file: Path | None, pairs: Mapping[str, str]) -> dict[str, Any]:
    """A --config file's settings (flattened to dotted keys), then the command line's KEY=VALUE pairs over them."""
    settings = {} if config_file is None else flatten(load_settings_file(config_file))
    settings.update({key: parse_value(value) for key, value in pairs.items()})
    return settings
