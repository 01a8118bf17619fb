#!/usr/bin/env bash
# Rebuild docs/results/first-grid/ (as it then was, at commit 7288eef): the cpu preset's sweep (Tables I-IV), eq. 9 (Fig. 3), alpha/beta tuning on dev,
# then the tables, the run's settings and the package versions. A stopped step continues where it stopped:
# the same sweep command resumes its run folder, and the artifact store keeps every model built so far.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=docs/results/first-grid
python cli.py sweep --preset cpu
python cli.py select-aug --preset cpu
python cli.py tune --preset cpu --attack badnets --samples 4
python cli.py tables --results runs/cpu --out "$out"
cp runs/cpu/spec.yaml "$out/spec.yaml"
python -m pip freeze | grep -iE '^(torch|transformers|tokenizers|safetensors|datasets|ray|optuna|polars|pyarrow|numpy|nlpaug|nltk|scikit-learn|rich|click)==' > "$out/versions.txt"
python --version >> "$out/versions.txt"
