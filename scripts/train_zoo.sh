#!/usr/bin/env bash
# Train the teaching zoo on one GPU: render the data once, train the six models in parallel
# (they are small, so one GPU runs them side by side), then write the manifest.
# Usage: bash scripts/train_zoo.sh [OUT_DIR] [EPOCHS]
set -euo pipefail
out=${1:-nullspace_utils/zoo}
epochs=${2:-40}
cache=${TMPDIR:-/tmp}/zoo_train_uint8.npy
python3 -m nullspace_utils.zoo data --n 60000 --out "$cache"
pids=()
for name in zoo-vit-s zoo-vit-b zoo-vit-l zoo-resnet zoo-efficientnet zoo-mobilenetv3; do
  python3 -m nullspace_utils.zoo train --models "$name" --cache "$cache" --out-dir "$out" --epochs "$epochs" \
    > "$out/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
python3 -m nullspace_utils.zoo manifest --out-dir "$out" \
  --command "bash scripts/train_zoo.sh $out $epochs"
