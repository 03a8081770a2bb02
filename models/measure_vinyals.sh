#!/usr/bin/env bash
# The published protocol's four cells for models/vinyals.onnx (models/README.md): Omniglot
# `vinyals-test` with rotations as classes (1,692 classes), 1000 episodes, 15 queries, seed 0.
#   bash models/measure_vinyals.sh [MODEL] [extra eval options, e.g. --support-shift 0] > figures.jsonl
set -euo pipefail
MODEL=${1:-models/vinyals.onnx}
shift || true
# A named source ("omniglot", "mnist"): the files under EDGEMETA_DATA when it holds them, else fetched once into EDGEMETA_CACHE.
for ws in "5 1" "5 5" "20 1" "20 5"; do set -- $ws "$@"
  edgemeta eval --model "$MODEL" --data omniglot --split vinyals-test --way "$1" --shot "$2" \
      --episodes 1000 --seed 0 --json "${@:3}" 2>/dev/null
  shift 2
done
