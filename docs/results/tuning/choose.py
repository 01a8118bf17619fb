"""MBTSAD's settings chosen three ways from the same proposed settings: by the defender's proxy backdoor on the
attack's own M_b (proxy), on the other attacks' proxy models (leave one attack out), and by the attacker's own
trigger (the oracle, from the committed oracle study), each a best_params.json for `sweep`.

`python docs/results/tuning/choose.py PROXY_TRIALS ORACLE_TRIALS OUT_DIR` reads the `tune_trials.parquet` listings
of `tune --objective proxy` and of the oracle tune (`../fidelity/tune/`). Every study samples its settings with a
sampler seeded alike (seed 0 plus the trials it holds) and TPE draws its first 10 at random, so each study's first
settings are the same ones: the script keeps the settings that every proxy study ran (and says which), so each one
was run, with the same code and seed, on every attack's proxy model. Then per attack:
- proxy: the lowest objective of the attack's own proxy study (what `tune --objective proxy` picks among them);
- leave one out: the lowest orchestration.tuning.objective of the means over the other attacks' proxy runs (as
  `tune_cell` pools them), which is what `tune --objective proxy --leave-one-out` computes on these settings;
- oracle, same settings: the lowest oracle objective among the same settings, the oracle at the proxy's budget.
It prints both objectives of every setting and their rank correlation: does the proxy rank settings as the oracle does?
"""

import json
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from orchestration.tuning import leave_one_out, objective, seed_mean, tuning_label

PARAMS = ["alpha", "beta", "distil_lr", "distil_epochs", "attention_axis"]


def finished(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path).filter(pl.col("status") == "ok")


proxy_path, oracle_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
proxy, oracle = finished(proxy_path), finished(oracle_path)
attacks = proxy["attack"].unique(maintain_order=True).to_list()
(dataset,) = proxy["dataset"].unique().to_list()
(penalty,) = proxy["penalty"].unique().to_list()
ran = {attack: set(proxy.filter(pl.col("attack") == attack).select(PARAMS).rows()) for attack in attacks}
shared = set.intersection(*ran.values())
extra = {attack: len(settings - shared) for attack, settings in ran.items() if settings - shared}
settings = [dict(zip(PARAMS, values, strict=True)) for values in sorted(shared, key=str)]
print(f"{len(settings)} settings ran in every proxy study ({', '.join(attacks)}); left out, run by some only: {extra}")
if not settings:
    sys.exit(f"{proxy_path}: no setting ran in every study; run `tune --leave-one-out` instead")


def runs(trials: pl.DataFrame, setting: dict, attacks: tuple[str, ...]) -> list[dict]:
    rows = trials.filter(pl.struct(PARAMS) == setting, pl.col("attack").is_in(attacks)).unique(["attack", *PARAMS])
    return [
        {"asr": r["dev_asr"], "cacc": r["dev_cacc"], "reference_cacc": r["reference_cacc"]}
        for r in rows.rows(named=True)
    ]


def pooled(trials: pl.DataFrame, setting: dict, attacks: tuple[str, ...]) -> float | None:
    scores = runs(trials, setting, attacks)
    return objective(**seed_mean(scores), penalty=penalty) if len(scores) == len(attacks) else None


choices: dict[str, dict[str, dict]] = {"proxy": {}, "leave-one-out": {}, "oracle-same-settings": {}}
print("| attack | setting | " + " | ".join(PARAMS) + " | proxy objective | oracle objective | left-out objective |")
print("|---|--:|" + "--:|" * len(PARAMS) + "--:|--:|--:|")
for attack in attacks:
    others = leave_one_out(attacks, attack)
    scored = []
    for index, setting in enumerate(settings):
        own, truth, rest = (
            pooled(proxy, setting, (attack,)),
            pooled(oracle, setting, (attack,)),
            pooled(proxy, setting, others),
        )
        scored.append((index, setting, own, truth, rest))
        shown = " | ".join(
            f"{setting[name]:.3g}" if isinstance(setting[name], float) else str(setting[name]) for name in PARAMS
        )
        oracle_text = "—" if truth is None else f"{truth:.2f}"
        print(f"| {attack} | {index} | {shown} | {own:.2f} | {oracle_text} | {rest:.2f} |")
    ranked_both = pl.DataFrame(
        [(e[2], e[3]) for e in scored if e[3] is not None], schema=["proxy", "oracle"], orient="row"
    )
    rho = ranked_both.select(pl.corr("proxy", "oracle", method="spearman")).item() if len(ranked_both) > 2 else None
    print(
        f"{attack}: Spearman rank correlation of the proxy and oracle objectives over {len(ranked_both)} settings: "
        + ("—" if rho is None else f"{rho:+.2f}")
    )
    key = f"{dataset}/{attack}"
    for label, position, tuned_by in (
        ("proxy", 2, tuning_label("proxy", attack, (attack,))),
        ("leave-one-out", 4, tuning_label("proxy", attack, others)),
        ("oracle-same-settings", 3, "oracle (the proxy's settings)"),
    ):
        ranked = [entry for entry in scored if entry[position] is not None]
        if ranked:
            best = min(ranked, key=lambda entry: entry[position])
            choices[label][key] = {**best[1], "tuned_by": tuned_by}
            print(f"{attack}, {label}: setting {best[0]} (objective {best[position]:.2f})")
out.mkdir(parents=True, exist_ok=True)
for label, best in choices.items():
    (out / f"{label}.json").write_text(json.dumps(best, indent=2, sort_keys=True) + "\n")
print(f"wrote {', '.join(str(out / f'{label}.json') for label in choices)}")
