"""What each table holds, as data: display names, row order, footnotes."""

from __future__ import annotations

from dataclasses import dataclass

# Column and block order follows the paper; names not listed here follow, sorted, under their own name.
DATASETS = {"sst2": "SST-2", "imdb": "IMDb"}
ATTACKS = {"badnets": "BadNets", "lwp": "LWP", "ep": "EP", "addsent": "AddSent"}
# Shown even when a run lacks them, so a partial run reads as missing cells rather than a smaller table.
PAPER_DATASETS = ("sst2", "imdb")
PAPER_ATTACKS = ("badnets", "lwp", "ep")
# Eq. 9's augmentation set B, in the paper's order for the cross-entropy table.
AUGMENTATIONS = {"ts": "TS", "eda": "EDA", "aeda": "AEDA", "cwea": "CWEA", "add_trig": "Add Trig"}

# The eq. 1 weights note names the values the rows ran with; only `cli.py tune` (dev data) changes them.
WEIGHTS_NOTE = (
    "α and β (eq. 1) as run: {values}. Values other than the defaults 1 and 1 come from `cli.py tune`, "
    "on dev data only."
)
BOLD_NOTE = "Bold: the highest CACC and the lowest ASR among the defenses of each attack and dataset."


@dataclass(frozen=True)
class Row:
    """One table row: its label and the results it shows."""

    label: str
    defense: str  # the result files' `defense`
    augmentation: str | None = None  # the result files' `augmentation`, matched exactly (None: null)
    mark: str | None = None  # footnote letter, shown in the first attack block as in the paper
    defended: bool = True  # False for the undefended model: shown for reference, never bold


@dataclass(frozen=True)
class TableSpec:
    """One of the paper's metric tables: attack blocks of rows, CACC and ASR columns per dataset."""

    key: str  # output file stem
    number: str  # the paper's table number
    title: str
    rows: tuple[Row, ...]
    notes: tuple[tuple[str | None, str], ...]  # (footnote letter or None, text)
    datasets: tuple[str, ...] | None = None  # fixed dataset columns; None: every dataset in the run
    weighted: bool = True  # holds an MBTSAD variant, so the alpha/beta note applies
    row_header: str = "Defense"


NONE = Row("None", "none", mark="a", defended=False)
MBTSAD = Row("MBTSAD", "mbtsad", "ts")
NO_DEFENSE = ("a", "No defense.")

TABLES = (
    TableSpec(
        key="table1",
        number="I",
        title="Results of different detection-based defense methods",
        rows=(NONE, Row("STRIP", "strip"), Row("RAP", "rap"), MBTSAD),
        notes=(
            NO_DEFENSE,
            (
                None,
                "STRIP and RAP: a rejected clean sample counts as a CACC error, "
                "a rejected poisoned sample as a failed attack.",
            ),
        ),
    ),
    TableSpec(
        key="table2",
        number="II",
        title="Results of different backdoor mitigation methods",
        rows=(
            NONE,
            Row("CFT", "cft", mark="c"),
            Row("Reinitialization", "reinit"),
            Row("Fine-Pruning", "fine-pruning"),
            Row("TS-FT", "ts-ft", "ts", mark="d"),
            MBTSAD,
            Row("Fine-Mixing", "fine-mixing", mark="b"),
            Row("Fine-Purifying", "fine-purifying", mark="b"),
            Row("NAD", "nad", mark="e"),
        ),
        notes=(
            NO_DEFENSE,
            ("b", "Methods based on pre-trained weights."),
            ("c", "Fine-tuning on clean data."),
            ("d", "Retraining on the augmented dataset D_a."),
            (
                "e",
                "Neural Attention Distillation (Li et al., 2021), not in the paper: the CFT model as teacher, "
                "distillation on D_c with L_cls and L_a at MBTSAD's settings.",
            ),
        ),
    ),
    TableSpec(
        key="table3",
        number="III",
        title="Retraining results of different augmentation methods on SST-2",
        rows=(
            NONE,
            Row("EDA", "aug-ft", "eda"),
            Row("AEDA", "aug-ft", "aeda"),
            Row("CWEA", "aug-ft", "cwea"),
            Row("Add Trig", "aug-ft", "add_trig", mark="b"),
            Row("TS", "ts-ft", "ts"),
        ),
        notes=(NO_DEFENSE, ("b", "Randomly inserts the token “cb”, which is not an LWP trigger.")),
        datasets=("sst2",),
        weighted=False,
        row_header="Method",
    ),
    TableSpec(
        key="table4",
        number="IV",
        title="Results of ablation defense methods",
        rows=(
            NONE,
            MBTSAD,
            Row("MBTSAD-no-hid", "mbtsad-no-hid", "ts"),
            Row("MBTSAD-no-att", "mbtsad-no-att", "ts"),
            Row("CD", "cd", "ts", mark="b"),
            Row("MBTSAD-CFT", "mbtsad-cft-teacher", "ts", mark="c"),
        ),
        notes=(
            NO_DEFENSE,
            ("b", "Distillation with only the classification loss L_cls."),
            ("c", "Not in the paper: MBTSAD with the CFT model as teacher instead of TS-FT, all else MBTSAD's."),
        ),
    ),
)

# Bar-chart rows: every table row once, labelled so they read apart outside their table.
FIGURE_ROWS = (
    NONE,
    Row("STRIP", "strip"),
    Row("RAP", "rap"),
    *TABLES[1].rows[1:],
    *TABLES[3].rows[2:],
    *(Row(f"FT on {row.label}", row.defense, row.augmentation) for row in TABLES[2].rows[1:-1]),
)

CE_KEY = "eq9"
CE_TITLE = "Mean cross-entropy of the backdoored model on each augmented clean set (eq. 9)"
CE_NOTE = "Mean over batches of 16; bold: the largest loss per column, the augmentation that eq. 9 selects."
