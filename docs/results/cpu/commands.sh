#!/usr/bin/env bash
# Rebuild docs/results/cpu/: the cpu preset's grid over three seeds (Tables I-IV, SST-2), eq. 9 (Fig. 3), IMDb
# (Tables I, II, IV's main rows, reviews cut to 64 words), then the tables, the run's settings and the package versions.
# MBTSAD's alpha, beta and distillation settings come from runs/best_params.json, written by
# `python cli.py tune --preset cpu --attack ATTACK --samples 20 --run-dir runs/cpu-tune` for each attack (the
# study is docs/results/fidelity/tune/); its `<attack>` keys, copies of the `sst2/<attack>` ones, give IMDb
# the values tuned on SST-2 (IMDb is not tuned). A stopped step continues where it stopped: the same command
# resumes its run folder (or `python cli.py sweep --resume runs/NAME`), and the artifact store keeps every
# model and result built so far, so cells shared with other runs (docs/results/fidelity/) are not recomputed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=docs/results/cpu
python - <<'PY'
import json, os
path = "runs/best_params.json"
params = json.load(open(path))
for attack in ("badnets", "lwp", "ep"):
    params[attack] = dict(params[f"sst2/{attack}"])
json.dump(params, open(path + ".tmp", "w"), indent=2, sort_keys=True)
os.replace(path + ".tmp", path)
PY
python cli.py sweep --preset cpu --set 'seeds=[0,1,2]' --run-dir runs/cpu
python cli.py select-aug --preset cpu --set 'seeds=[0,1,2]' --run-dir runs/cpu
python cli.py sweep --preset cpu --set 'datasets=[imdb]' --run-dir runs/cpu-imdb2
python cli.py tables --results runs/cpu --results runs/cpu-imdb2 --out "$out"
cp runs/cpu/spec.yaml "$out/spec.yaml"
cp runs/cpu-imdb2/spec.yaml "$out/spec-imdb.yaml"
cp runs/best_params.json "$out/best_params.json"
python -m pip freeze | grep -iE '^(torch|transformers|tokenizers|safetensors|datasets|ray|optuna|polars|pyarrow|numpy|nlpaug|nltk|scikit-learn|rich|click)==' > "$out/versions.txt"
python --version >> "$out/versions.txt"
