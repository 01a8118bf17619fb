#!/usr/bin/env bash
# The documented real run of issue 3: MiniLM on the SST-2 OpenBackdoor split, three attacks, then MBTSAD
# with 20% clean data. Writes models and JSON reports under runs/real/ and a log per step.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/real}
mkdir -p "$out"
for attack in badnets lwp ep; do
  python cli.py attack --attack "$attack" --model minilm --dataset sst2 --epochs 2 --max-length 64 \
    --out "$out/$attack-mb" > "$out/$attack-attack.log" 2>&1
  python cli.py defend "$out/$attack-mb" --method mbtsad --dataset sst2 --fraction 0.2 --epochs 2 --max-length 64 \
    --out "$out/$attack-mbtsad" > "$out/$attack-mbtsad.log" 2>&1
done
