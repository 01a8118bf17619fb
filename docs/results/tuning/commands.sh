#!/usr/bin/env bash
# Rebuild docs/results/tuning/: MBTSAD's settings chosen as a defender could (issue 25), on the `cpu` grid's SST-2
# backdoored models, beside the committed oracle rows (../cpu/, tuned on the attacker's own trigger).
# 1. proxy: each attack's M_b gets a backdoor the defender plants itself (BadNets with the words dq jj qb rq, on a
#    tenth of D_c, target 0); 4 settings per attack on seed 0's dev data, scored with the defender's trigger
#    (session 11 ran BadNets with --samples 8 and stopped it after 4, then LWP with --samples 4, stopped before EP:
#    every study proposes the same first settings, so the four are the same for both);
# 2. choose.py: per attack the proxy's pick, the pick left one attack out, and the oracle's pick among the same four
#    settings (from the committed oracle study, ../fidelity/tune/);
# 3. each pick applied to M_b as it came (with M_b's own row, the pairs' reference), seed 0.
# A stopped step continues where it stopped (the store keeps every model and result built so far).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=docs/results/tuning
tuned=(--preset cpu --objective proxy --samples 4 --run-dir runs/cpu-proxy-tune --set resources.max_concurrent=1)
python cli.py tune "${tuned[@]}" --attack badnets --attack lwp
python "$out/choose.py" runs/cpu-proxy-tune/tune_trials.parquet docs/results/fidelity/tune/tune_trials.parquet runs/choices \
  > "$out/choose.md"
rows=(--preset cpu --set 'seeds=[0]' --set 'attacks=[badnets,lwp]' --set 'defenses=[none,mbtsad]' --set 'augmentations=[]'
  --max-concurrent 1)
python cli.py sweep "${rows[@]}" --set best_params=runs/choices/proxy.json --run-dir runs/cpu-proxy
python cli.py sweep "${rows[@]}" --set best_params=runs/choices/leave-one-out.json --run-dir runs/cpu-loo
python cli.py sweep "${rows[@]}" --set best_params=runs/choices/oracle-same-settings.json --run-dir runs/cpu-oracle4
mkdir -p "$out/proxy-tune" "$out/choices" "$out/store-trial"
cp runs/cpu-proxy-tune/tune_trials.parquet runs/cpu-proxy-tune/tune_trials.md "$out/proxy-tune/"
cp runs/choices/*.json "$out/choices/"
for run in cpu-proxy cpu-loo cpu-oracle4; do mkdir -p "$out/$run/trials"; cp runs/$run/trials/*.parquet "$out/$run/trials/"; done
cp -r runs/store/trial/. "$out/store-trial/" && find "$out/store-trial" -name ".*.lock" -delete
# The M_b rebuilt here are not the committed grid's (README.md), so the rows pair with this run's own M_b only.
python -m tables.tuned_rows --grid "$out/cpu-proxy/trials" --rows "oracle, the proxy's 4 settings=$out/cpu-oracle4/trials" \
  --rows "proxy=$out/cpu-proxy/trials" --rows "leave one out=$out/cpu-loo/trials" --out "$out/compare.md"
