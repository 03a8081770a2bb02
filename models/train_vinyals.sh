#!/usr/bin/env bash
# Reproduce models/vinyals.onnx, the published protocol's model: Conv-4 trained on Omniglot
# `vinyals-trainval` (1,200 characters x 4 rotations = 4,800 classes), tested on `vinyals-test`
# (423 characters x 4 rotations, all from evaluation alphabets) by models/measure_vinyals.sh.
#
# The chain starts from the default model's stage-2 weights (models/train_default.sh, run RUN2):
# those were trained on the 964 background characters, which are all part of vinyals-trainval,
# so every stage has seen trainval classes only. Validation is 20-way 1-shot on `vinyals-val`
# (part of trainval: it tracks fit; the test split was measured only on the final file). Each
# stage starts from the previous one's best-validation checkpoint (--init):
#   A. 60-way, 1- and 5-shot episodes, affine + stroke-width augmentation, 4000 episodes;
#   B. 60-way 1-shot, affine augmentation only (no stroke dilation), learning rate 2e-4;
#   C. the same at 1e-4. This is the shipped file (validation 94.10%).
# A fourth stage like C (seed 6) reached 93.81% validation, below C, and was not used. B was
# chosen over a twin run with stroke dilation by validation (93.51% vs 93.01%).
# The exact commands run on the project's 2-core CPU (AMD EPYC, AVX2), 2026-11-26/27: A took
# 98 minutes, B 33 (1 thread, beside its twin), C 21. On a GPU add --device cuda (8 episodes per
# optimizer step, bf16).
set -euo pipefail
DATA=${DATA:-omniglot}  # a folder, or the named source (EDGEMETA_DATA's copy, else fetched once)
RUN2=${RUN2:-runs/lake_cpu2}
RUNA=${RUNA:-runs/vinyals_cpu}
RUNB=${RUNB:-runs/vinyals_1shot_affine}
RUNC=${RUNC:-runs/vinyals_1shot_affine2}
common=(--data "$DATA" --split vinyals-trainval --device cpu --way 60 --query 5 --size 28
        --val-every 500 --val-episodes 300 --test-way 20)
edgemeta train "${common[@]}" --out "$RUNA" --init "$RUN2" --shot 1,5 --episodes 4000 --augment full \
    --lr 5e-4 --lr-step 1000 --seed 3
edgemeta train "${common[@]}" --out "$RUNB" --init "$RUNA" --shot 1 --episodes 1500 --augment affine \
    --lr 2e-4 --lr-step 500 --seed 4
edgemeta train "${common[@]}" --out "$RUNC" --init "$RUNB" --shot 1 --episodes 1500 --augment affine \
    --lr 1e-4 --lr-step 500 --seed 5
edgemeta export "$RUNC" --out models/vinyals.onnx --data "$DATA"
bash models/measure_vinyals.sh models/vinyals.onnx
