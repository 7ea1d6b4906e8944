#!/usr/bin/env bash
# The fine-tuning sweep of the "beyond the paper" chapter (issue #23) on one GPU, as it was run for the committed
# book/results/teaching/finetune.json: ten parts in parallel (the zoo ViT-S is too small to fill a GPU, so one
# process per part keeps it busy), joined by `merge finetune`. The -C pass runs afterwards on a CPU:
#   python -m nullspace_utils.experiments finetune-corruptions
# usage: bash scripts/finetune_sweep.sh OUT_DIR [PYTHON]   (OUT_DIR gets parts/, logs/, finetune/, finetune.json)
set -euo pipefail
out=${1:?give an output folder}
py=${2:-python}
mkdir -p "$out/parts" "$out/logs" "$out/finetune"
pids=()
names=()
part() {  # part NAME ARGS...: one part of the sweep in the background, its log in logs/NAME.log
  local name=$1
  shift
  OMP_NUM_THREADS=2 "$py" -m nullspace_utils.experiments finetune --weights "$out/finetune" \
    --out "$out/parts/$name.json" "$@" >"$out/logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}
part untuned --methods untuned
for seed in 0 1 2; do
  part "plain-s$seed" --seeds "$seed" --methods plain
  for lim in 2 4; do
    part "lim$lim-s$seed" --seeds "$seed" --lims "$lim" --methods nullspace gaussian
  done
done
failed=0
for index in "${!pids[@]}"; do
  if ! wait "${pids[$index]}"; then
    echo "part ${names[$index]} failed: see $out/logs/${names[$index]}.log" >&2
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
"$py" -m nullspace_utils.experiments merge finetune "$out"/parts/*.json --out "$out/finetune.json"
