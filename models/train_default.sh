#!/usr/bin/env bash
# Reproduce models/default.onnx: Conv-4 on Omniglot background (30 alphabets, with rotations).
# DATA defaults to ../shared/data/omniglot; on a GPU this takes about 2.5 minutes.
set -euo pipefail
DATA=${DATA:-../shared/data/omniglot}
RUN=${RUN:-runs/default}
edgemeta train --data "$DATA" --split background --out "$RUN" --device auto \
    --way 60 --shot 1,5 --query 5 --episodes-per-step 8 --episodes 200000 --lr-step 25000 \
    --augment full --val-every 5000 --val-episodes 600 --time-limit 140 --seed 0
edgemeta export "$RUN" --out models/default.onnx
