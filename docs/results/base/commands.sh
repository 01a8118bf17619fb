#!/usr/bin/env bash
# Rebuild docs/results/base/: the `base` preset (all-mpnet-base-v2, 110M, offline) on SST-2, seed 0 first.
# 1. the model: `fetch-model` installs the verified hub folder into the local Hugging Face cache;
# 2. its rate (`rates`): does the paper's 2e-5 fit a 110M encoder? (it chose 5e-5, 2e-5 within 0.5 dev points)
# 3. claim (a) first: the three backdoored models alone (`defenses=[none]`), the attacker training at the
#    model's own rate ATTACK_LR (5e-5 by step 2; the paper's 2e-5 left BadNets at 67.87 ASR on this model,
#    SPEC "Third look"); then, for the attacks whose M_b reaches 89% ASR, their rows at the paper's defence
#    rates (retraining 2e-5, distillation 5e-4, alpha = beta = 1).
# Run it from a checkout of the commit named in docs/results/base/README.md, so a resumed run keeps one code
# version; a stopped step continues where it stopped (the store keeps every model and result built so far).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=docs/results/base
attack_lr=${ATTACK_LR:-5e-5}
seeds=${SEEDS:-[0]}
python cli.py fetch-model mpnet-base
[ -f "$out/rates-mpnet-sst2.json" ] || python cli.py rates --model mpnet-base --rate 2e-5 --rate 5e-5 --rate 1e-4 \
  --epochs 2 --max-train 2000 --out "$out/rates-mpnet-sst2.json"
common=(--preset base --set "training.attack.lr=$attack_lr" --set "seeds=$seeds")
python cli.py sweep "${common[@]}" --set 'defenses=[none]' --run-dir runs/base-gate
passing=$(python - <<'PY'
import polars as pl
rows = pl.read_parquet("runs/base-gate/trials/*.parquet").filter(pl.col("defense") == "none")
for row in rows.sort("attack", "seed").iter_rows(named=True):
    print(f"claim (a): {row['attack']} seed {row['seed']}: M_b CACC {row['cacc']:.2f} ASR {row['asr']:.2f} "
          f"flip {row['clean_flip']:.2f}", file=__import__("sys").stderr)
passed = rows.group_by("attack").agg((pl.col("asr") >= 89).all().alias("ok")).filter("ok")["attack"].sort()
print(",".join(passed))
PY
)
echo "attacks whose M_b passes claim (a): ${passing:-none}"
[ -n "$passing" ] && python cli.py sweep "${common[@]}" --set "attacks=[$passing]" --run-dir runs/base
