#!/usr/bin/env bash
# Copy what the base grid has finished into docs/results/base/ (run from the checkout that ran commands.sh, with
# OUT the main checkout's docs/results/base): each run folder's trial rows and spec, and the store's finished
# trial results (`trial/`, a few KB each), so a new machine's sweep reads them instead of training again.
# RUNS lists the run folders as RUN[:NAME] (NAME: the folder under OUT, default the run's own name).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-docs/results/base}
for item in ${RUNS:-base-gate base base-lwp}; do
  run=runs/${item%%:*}
  name=${item##*:}
  [ -d "$run/trials" ] || continue
  mkdir -p "$out/$name/trials"
  cp "$run"/trials/*.parquet "$out/$name/trials/" 2>/dev/null || true
  cp "$run/spec.yaml" "$out/$name/spec.yaml"
done
mkdir -p "$out/store-trial"
cp -r runs/store/trial/. "$out/store-trial/"
find "$out/store-trial" -name ".*.lock" -delete  # build locks, not results
