#!/usr/bin/env bash
# Installs pdflatex with booktabs (Debian), for the test that compiles the emitted tables; idempotent.
set -euo pipefail

if command -v pdflatex >/dev/null && kpsewhich booktabs.sty >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
# texlive-latex-base gives pdflatex; booktabs.sty ships in texlive-latex-recommended.
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  texlive-latex-base texlive-latex-recommended
kpsewhich booktabs.sty >/dev/null
