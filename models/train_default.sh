#!/usr/bin/env bash
# Reproduce models/default.onnx and models/default.int8.onnx: Conv-4, Omniglot background set only
# (30 alphabets, 4 of them held out for validation; rotations as extra classes), so the 20
# evaluation alphabets stay unseen. These are the exact commands that made the shipped files, on
# the project's 2-core CPU (AMD EPYC; AVX2 for stages 1-9, an AVX-512 + bf16 host for stage 10), in
# ten stages, each from the previous one's best weights (--init):
#   1. 55 minutes from scratch, 30-way (stage 1 then ran with channels_last, the CPU default of the
#      time: the same arithmetic as today's contiguous default);
#   2. 60-way at half the learning rate: the checkpoint used is its episode 2000 (50 minutes in;
#      the run went on to 3,224 episodes without a better validation and was stopped, hence
#      --episodes 2000 here);
#   3. 60-way 1-shot episodes, affine augmentation only (no stroke dilation), learning rate 2e-4
#      halved every 500 episodes, validated 20-way 1-shot (32 minutes, beside other work);
#   4. the same at 1e-4 (22 minutes);
#   5. 60-way, episodes alternating 1-shot and 5-shot again, affine only, 1e-4 halved every 500
#      episodes (27 minutes; its checkpoint at episode 500 was resumed with --resume after a
#      session ended). Instead of stage 6, a stage like the fifth at 5e-5 (runs/lake_cpu7) gained 0.02-0.03 points on
#      the held-out alphabets, inside the CI, and one with stroke dilation back on (--augment full,
#      5e-5, 1000 episodes, runs/lake_cpu8) lost 0.2-0.5 points there, and one on 5-shot episodes
#      only (5e-5, 1000 episodes, runs/lake_cpu9) matched stage 5 within 0.1: none was used.
#      Nor was a stage at --size 32 from stage 5 (2e-4, runs/lake_cpu10_s32): -0.1/-0.3/+0.1 there.
#   6. the same at 100-way, 1000 episodes (32 minutes): +0.06/+0.17/+0.04 on the held-out
#      alphabets (5-way 1-shot / 20-way 1-shot / 20-way 5-shot) over stage 5;
#   7. the same at 150-way, halved every 300 episodes, 600 episodes (39 minutes): +0.06/+0.20/+0.11
#      over stage 6 there;
#   8. the same at 200-way, halved every 250 episodes, 500 episodes (34 minutes): +0.04/+0.09/+0.04
#      over stage 7 there;
#   9. the same at 300-way, halved every 200 episodes, 400 episodes (42 minutes): +0.02/+0.10/+0.01
#      over stage 8 there;
#  10. the same at 300-way in bf16 autocast, halved every 300 episodes, 1200 episodes (45 minutes;
#      best at episode 900), started from stage 9's exported ONNX file (the session that trained it
#      had the file but not stage 9's checkpoint; --init re-inflates the folded BatchNorms):
#      +0.01/+0.14/+0.04 over stage 9 there.
# In stages 1-2 the learning rate halves at every eighth of --time-limit, so a faster machine trains
# more episodes in the same time (use --lr-schedule episodes to fix the count instead). The choice
# between stages was made on the held-out alphabets only (python benchmarks/support_shift.py
# --model EXPORTED_STAGE --shifts 1). On a GPU add
# --device cuda (8 episodes per optimizer step, bf16).
set -euo pipefail
DATA=${DATA:-omniglot}  # a folder, or the named source (EDGEMETA_DATA's copy, else fetched once)
RUN=${RUN:-runs/lake_cpu}
RUN2=${RUN2:-runs/lake_cpu2}
RUN3=${RUN3:-runs/lake_cpu4}
RUN4=${RUN4:-runs/lake_cpu5}
RUN5=${RUN5:-runs/lake_cpu6}
RUN6=${RUN6:-runs/lake_cpu11_w100}
RUN7=${RUN7:-runs/lake_cpu12_w150}
RUN8=${RUN8:-runs/lake_cpu13_w200}
RUN9=${RUN9:-runs/lake_cpu14_w300}
RUN10=${RUN10:-runs/lake_cpu15_w300_bf16}
edgemeta train --data "$DATA" --split background --out "$RUN" --device cpu \
    --way 30 --shot 1,5 --query 5 --episodes 100000000 --augment full --size 28 \
    --lr-schedule time --time-limit 3300 --val-every 1000 --val-episodes 300 --seed 0
edgemeta train --data "$DATA" --split background --out "$RUN2" --device cpu --init "$RUN" \
    --way 60 --shot 1,5 --query 5 --episodes 2000 --augment full --size 28 --lr 5e-4 \
    --lr-schedule time --time-limit 6600 --val-every 1000 --val-episodes 300 --seed 1
edgemeta train --data "$DATA" --split background --out "$RUN3" --device cpu --init "$RUN2" \
    --way 60 --shot 1 --query 5 --episodes 1500 --augment affine --size 28 --lr 2e-4 --lr-step 500 \
    --val-every 500 --val-episodes 300 --test-way 20 --seed 7
edgemeta train --data "$DATA" --split background --out "$RUN4" --device cpu --init "$RUN3" \
    --way 60 --shot 1 --query 5 --episodes 1500 --augment affine --size 28 --lr 1e-4 --lr-step 500 \
    --val-every 500 --val-episodes 300 --test-way 20 --seed 8
# Stages 5-9: episodes alternating 1-shot and 5-shot, affine augmentation only, Adam 1e-4 halved
# (and validated) every STEP episodes.
mixed_shot_stage() {  # OUT INIT WAY EPISODES STEP SEED
    edgemeta train --data "$DATA" --split background --out "$1" --device cpu --init "$2" \
        --way "$3" --shot 1,5 --query 5 --episodes "$4" --augment affine --size 28 --lr 1e-4 --lr-step "$5" \
        --val-every "$5" --val-episodes 300 --test-way 20 --seed "$6"
}
mixed_shot_stage "$RUN5" "$RUN4" 60 1500 500 9
mixed_shot_stage "$RUN6" "$RUN5" 100 1000 500 14
mixed_shot_stage "$RUN7" "$RUN6" 150 600 300 15
mixed_shot_stage "$RUN8" "$RUN7" 200 500 250 16
mixed_shot_stage "$RUN9" "$RUN8" 300 400 200 17
# Stage 10 starts from stage 9's export (the file the previous default shipped as).
edgemeta export "$RUN9" --out "$RUN9/model.onnx" --data "$DATA"
edgemeta train --data "$DATA" --split background --out "$RUN10" --device cpu --init "$RUN9/model.onnx" \
    --way 300 --shot 1,5 --query 5 --episodes 1200 --augment affine --size 28 --lr 1e-4 --lr-step 300 \
    --val-every 300 --val-episodes 300 --test-way 20 --seed 18 --precision bf16
# Export records --support-shift 1 (the default): the runtime embeds each enrolled image as the
# mean over its 1-pixel shifts, and the threshold is chosen that way.
edgemeta export "$RUN10" --out models/default.onnx --data "$DATA"
edgemeta export "$RUN10" --int8 --out models/default.int8.onnx --data "$DATA"
