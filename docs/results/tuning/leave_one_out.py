"""Leave one attack out, from the proxy tune's own trials: each attack's setting chosen on the other attacks' proxy
models, without running them again.

`python docs/results/tuning/leave_one_out.py TRIALS OUT` reads `tune --objective proxy`'s trial listing
(`tune_trials.parquet`) and writes OUT, a best_params.json for `sweep`. This is what `tune --objective proxy
--leave-one-out --samples N` computes, given one condition the script checks first: every attack's study proposed
the same N settings (each study's sampler starts from the same seed, and N is below TPE's 10 random start-up
draws), so each setting was already run, with the same code and seed, on every other attack's proxy model. Per
left-out attack and setting, the objective is orchestration.tuning.objective of the means over the other attacks'
dev scores (seed_mean, as `tune_cell` pools them); the lowest wins, labelled `tuned_by` as tuning_label says.
"""

import json
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from orchestration.tuning import leave_one_out, objective, seed_mean, tuning_label

PARAMS = ["alpha", "beta", "distil_lr", "distil_epochs", "attention_axis"]

trials_path, out = Path(sys.argv[1]), Path(sys.argv[2])
trials = pl.read_parquet(trials_path).filter(pl.col("status") == "ok")
attacks = trials["attack"].unique(maintain_order=True).to_list()
proposed = {attack: set(trials.filter(pl.col("attack") == attack).select(PARAMS).rows()) for attack in attacks}
settings = [dict(zip(PARAMS, values, strict=True)) for values in sorted(proposed[attacks[0]], key=str)]
if any(other != proposed[attacks[0]] for other in proposed.values()):
    sys.exit(f"{trials_path}: the studies proposed different settings; run `tune --leave-one-out` instead")
(penalty,) = trials["penalty"].unique().to_list()
(dataset,) = trials["dataset"].unique().to_list()
print(f"{len(settings)} settings, proposed alike by the {len(attacks)} studies ({', '.join(attacks)})")
best: dict[str, dict] = {}
for left_out in attacks:
    others = leave_one_out(attacks, left_out)
    scored = []
    for setting in settings:
        runs = trials.filter(pl.struct(PARAMS) == setting, pl.col("attack").is_in(others))
        scores = [
            {"asr": r["dev_asr"], "cacc": r["dev_cacc"], "reference_cacc": r["reference_cacc"]}
            for r in runs.rows(named=True)
        ]
        assert len(scores) == len(others), (setting, len(scores))
        scored.append((objective(**seed_mean(scores), penalty=penalty), setting))
    score, setting = min(scored, key=lambda pair: pair[0])
    best[f"{dataset}/{left_out}"] = {**setting, "tuned_by": tuning_label("proxy", left_out, others)}
    print(f"{left_out}: {setting}, objective {score:.2f} on {'+'.join(others)}")
out.write_text(json.dumps(best, indent=2, sort_keys=True) + "\n")
print(f"wrote {out}")
