#!/usr/bin/env bash
# Issue 3's diagnosis of MBTSAD (cpu preset: MiniLM, SST-2, length 48, 2 epochs, seed 0, alpha = beta = 1).
# Each line is a one-cell sweep that reuses the cpu sweep's cached M_b and TS-FT teacher from runs/store
# and changes one setting of the distillation; rows land in runs/diag-<name>/trials/.
# The first two ran under the axes' first names, "query" (now "row") and "key" (now "received").
set -euo pipefail
one() {  # one <name> <attack> <setting>...: MBTSAD on one attack with defense_settings overrides
  local name=$1 attack=$2; shift 2
  python cli.py sweep --preset cpu --run-dir "runs/diag-$name" --max-concurrent 1 \
    --set "attacks=[$attack]" --set defenses=[mbtsad] --set augmentations=[] "$@"
}
one axis-query badnets --set defense_settings.mbtsad.attention_axis=row
one axis-key badnets --set defense_settings.mbtsad.attention_axis=received
one lwp-axis-row lwp --set defense_settings.mbtsad.attention_axis=row
one axis-column badnets --set defense_settings.mbtsad.attention_axis=column
one lr-1e-4 badnets --set defense_settings.mbtsad.train.lr=1e-4
one lr-2e-3 badnets --set defense_settings.mbtsad.train.lr=2e-3
one ep-axis-row ep --set defense_settings.mbtsad.attention_axis=row
