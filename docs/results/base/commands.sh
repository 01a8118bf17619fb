#!/usr/bin/env bash
# Rebuild docs/results/base/: the `base` preset (all-mpnet-base-v2, 110M, offline) on SST-2, seed 0 first.
# 1. the model: `fetch-model` installs the verified hub folder into the local Hugging Face cache;
# 2. its rate (`rates`): does the paper's 2e-5 fit a 110M encoder?
# 3. per attack, claim (a) first: M_b alone (`defenses=[none]`) at the attack rate ATTACK_LR (the attacker's
#    choice; the paper's 2e-5 left BadNets at 67.87 ASR on this model, SPEC "Third look"), then, only if
#    M_b's ASR is at least 89, the attack's rows at the paper's defence rates (alpha = beta = 1).
# Run it from a checkout of the commit named in docs/results/base/README.md, so a resumed run keeps one code
# version; a stopped step continues where it stopped (the store keeps every model and result built so far).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=docs/results/base
attack_lr=${ATTACK_LR:-5e-5}
python cli.py fetch-model mpnet-base
[ -f "$out/rates-mpnet-sst2.json" ] || python cli.py rates --model mpnet-base --rate 2e-5 --rate 5e-5 --rate 1e-4 \
  --epochs 2 --max-train 2000 --out "$out/rates-mpnet-sst2.json"
passes() {  # M_b's ASR in a gate run folder is at least 89 (claim (a))
  python - "$1" <<'PY'
import sys, polars as pl
rows = pl.read_parquet(f"{sys.argv[1]}/trials/*.parquet").filter(pl.col("defense") == "none")
asr = rows["asr"].item()
print(f"{sys.argv[1]}: M_b CACC {rows['cacc'].item():.2f} ASR {asr:.2f} flip {rows['clean_flip'].item():.2f}")
sys.exit(0 if asr >= 89 else 1)
PY
}
for attack in ${ATTACKS:-badnets lwp ep}; do
  sets=(--set "attacks=[$attack]" --set "attack_settings.$attack.train.lr=$attack_lr")
  [ "$attack" = ep ] && sets=(--set "attacks=[$attack]" --set "training.attack.lr=$attack_lr")  # EP's clean model
  python cli.py sweep --preset base "${sets[@]}" --set 'defenses=[none]' --run-dir "runs/base-$attack-gate" --max-concurrent 1
  if passes "runs/base-$attack-gate"; then
    python cli.py sweep --preset base "${sets[@]}" --run-dir "runs/base-$attack" --max-concurrent 1
  else
    echo "$attack: M_b fails claim (a) at attack lr $attack_lr; its defences are not run"
  fi
done
