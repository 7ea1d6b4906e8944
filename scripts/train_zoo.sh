#!/usr/bin/env bash
# Train the teaching zoo on one GPU: render the data once, train the models side by side
# (they are small, so one GPU runs them in parallel processes), then write the manifest.
# Usage: bash scripts/train_zoo.sh OUT_DIR [MODEL ...]      (default: all six)
# Epochs: VIT_EPOCHS (default 40; the three ViTs always share one recipe) and CNN_EPOCHS (default 10).
set -euo pipefail
out=${1:-nullspace_utils/zoo}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(zoo-vit-s zoo-vit-b zoo-vit-l zoo-resnet zoo-efficientnet zoo-mobilenetv3)
vit_epochs=${VIT_EPOCHS:-40}
cnn_epochs=${CNN_EPOCHS:-10}
cache=${TMPDIR:-/tmp}/zoo_train_uint8.npy
[ -f "$cache" ] || python3 -m nullspace_utils.zoo data --n 60000 --out "$cache"
pids=()
for name in "${models[@]}"; do
  case "$name" in zoo-vit-*) epochs=$vit_epochs ;; *) epochs=$cnn_epochs ;; esac
  python3 -m nullspace_utils.zoo train --models "$name" --cache "$cache" --out-dir "$out" --epochs "$epochs" \
    > "$out/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
python3 -m nullspace_utils.zoo manifest --out-dir "$out" \
  --command "VIT_EPOCHS=$vit_epochs CNN_EPOCHS=$cnn_epochs bash scripts/train_zoo.sh $out ${models[*]}"
exit $status
