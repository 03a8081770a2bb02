#!/usr/bin/env bash
# The one GPU job (issue 3 figures, issue 6 models): install, train recipe variants side by side
# on one GPU, then measure training throughput alone on the GPU. Run from the repo root with the
# data in gpu_data/{omniglot,mnist}; results land in $OUT/results.tgz (checkpoints, json, png, logs).
#   run: bash benchmarks/gpu_run.sh        (carry gpu_data)
#   CPU smoke test: DEVICE=cpu TRAIN_SECONDS=20 TP_SECONDS=0 OUT=/tmp/gpu bash benchmarks/gpu_run.sh
set -uo pipefail
OUT=${OUT:-out}
DEVICE=${DEVICE:-cuda}
T=${TRAIN_SECONDS:-270}
TP=${TP_SECONDS:-4}
# The device returns only a few files from $OUT: everything is packed into one results.tgz.
RES=$(mktemp -d)
date; nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true
if ! python3 -m pip install --no-deps --no-build-isolation -e . > "$RES/pip.log" 2>&1; then
  # Fallback: assemble the import package from the layout folders by symlinks.
  echo "pip install failed (see pip.log); using a symlinked package on PYTHONPATH"
  shim=$(mktemp -d); mkdir "$shim/edgemeta"; cp -r edgemeta/. "$shim/edgemeta/"
  for d in runtime train export models; do ln -s "$PWD/$d" "$shim/edgemeta/$d"; done
  export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"

# Variants train concurrently (one GPU, 16 CPU cores); each halves its learning rate at every
# eighth of its time budget, so all complete their schedule. Validation: 5-way 1-shot on
# held-out background alphabets (Lake) or vinyals-val.
COMMON=(--device "$DEVICE" --way 60 --shot 1,5 --query 5 --episodes 100000000 --lr-schedule time
        --time-limit "$T" --val-every 10000 --val-episodes 600 --no-progress --json)
variant() {  # name split augment size
  timeout $((T + 90)) python3 -m edgemeta train --data gpu_data/omniglot --split "$2" --augment "$3" --size "$4" \
      --out "$RES/$1" "${COMMON[@]}" > "$RES/$1.json" 2> "$RES/$1.log"
  echo "$1 rc=$? $(tail -c 300 "$RES/$1.json")"
}
VARIANTS=${VARIANTS:-"lake_full28:background:full:28 lake_affine28:background:affine:28 lake_full32:background:full:32 vinyals_full28:vinyals-trainval:full:28 vinyals_full32:vinyals-trainval:full:32"}
for v in $VARIANTS; do IFS=: read -r name split aug size <<< "$v"; variant "$name" "$split" "$aug" "$size" & done
wait
mkdir -p "$OUT" && tar -czf "$OUT/results.tgz" -C "$RES" .   # packed now too, in case a later step overruns

if [ "$TP" != "0" ]; then
  timeout 200 python3 benchmarks/train_throughput.py --device "$DEVICE" --seconds "$TP" \
      --tta-data gpu_data/omniglot --tta-seconds 40 --json > "$RES/throughput.json" 2> "$RES/throughput.log"
  echo "throughput rc=$?"; cat "$RES/throughput.log" | grep -v Warning | tail -8
fi
rm -f "$RES"/*/*.tmp
mkdir -p "$OUT" && tar -czf "$OUT/results.tgz" -C "$RES" . && du -sh "$OUT/results.tgz"; date
