#!/usr/bin/env bash
# Reproduce models/default.onnx: Conv-4, Omniglot background set only (30 alphabets, 4 of them
# held out for validation; rotations as extra classes), so the 20 evaluation alphabets stay unseen.
# This is the exact command that made the shipped file (then with channels_last, the CPU default
# of the time), on the project's 2-core CPU (AMD EPYC,
# AVX2): 55 minutes; the learning rate halves at every eighth of the time budget, so a faster
# machine trains more episodes in the same time (use --lr-schedule episodes --episodes N to fix the
# count instead). On a GPU add --device cuda (8 episodes per optimizer step, bf16).
set -euo pipefail
DATA=${DATA:-../shared/data/omniglot}
RUN=${RUN:-runs/lake_cpu}
edgemeta train --data "$DATA" --split background --out "$RUN" --device cpu \
    --way 30 --shot 1,5 --query 5 --episodes 100000000 --augment full --size 28 \
    --lr-schedule time --time-limit 3300 --val-every 1000 --val-episodes 300 --seed 0
edgemeta export "$RUN" --out models/default.onnx --data "$DATA"
