#!/usr/bin/env bash
# The figures of the model card (models/README.md), each from one `edgemeta eval` on the shipped
# ONNX file (1000 episodes, 15 queries per class, seed 0, 95% CI), written as JSON lines.
#   bash models/measure_default.sh [MODEL] [extra eval options, e.g. --support-shift 0] > figures.jsonl
set -euo pipefail
MODEL=${1:-models/default.onnx}
shift || true
EXTRA=("$@")
# A named source ("omniglot", "mnist"): the files under EDGEMETA_DATA when it holds them, else fetched once into EDGEMETA_CACHE.
run() { edgemeta eval --model "$MODEL" --episodes 1000 --seed 0 --json "$@" "${EXTRA[@]}" 2>/dev/null; }
# Lake split: trained on the background alphabets, tested on the 20 unseen evaluation alphabets.
for ws in "5 1" "5 5" "20 1" "20 5"; do set -- $ws
  run --data omniglot --split evaluation --way "$1" --shot "$2"; done
run --data omniglot --split evaluation --way 20 --shot 1 --within-alphabet
run --data omniglot --split evaluation --way 5 --shot 5 --unknown 5
# MNIST test set as an unseen domain (white on black; never trained on).
for s in 1 5; do run --data mnist --way 10 --shot "$s"; done
