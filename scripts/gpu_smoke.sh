#!/usr/bin/env bash
# The GPU side of the library, on a machine with a CUDA GPU and the requirements installed:
#   bash scripts/gpu_smoke.sh            (reports go to $OUT, else _build/gpu-smoke)
# 1. the device tests (tests/test_devices.py; CI has no GPU and skips them);
# 2. every chapter under the imagenet profile with random weights and a fake ImageNette (the code path at
#    224 px on the GPU, no download; the numbers mean nothing), with each chapter's run time;
# 3. every experiment runner under the imagenet profile on the same fake data, a few steps each.
# Every part runs even when one fails; the exit status is 1 if any failed.
set -uo pipefail
out=${OUT:-_build/gpu-smoke}
mkdir -p "$out"
status=0
PY=${PYTHON:-python3}
"$PY" -m pytest tests/test_devices.py -q -rs -p no:cacheprovider || status=1
"$PY" scripts/build_profile.py imagenet --smoke --no-build --report "$out/imagenet_chapters.json" || status=1
export NULLSPACE_PROFILE=imagenet NULLSPACE_WEIGHTS=random NULLSPACE_DATA=_build/profile-imagenet/fake-data
for experiment in approximate robustness; do
    echo "runner: $experiment"
    "$PY" -m nullspace_utils.experiments "$experiment" --profile imagenet --device cuda --steps 3 \
        --out "$out/$experiment.json" || status=1
done
echo "runner: watermark"
"$PY" -m nullspace_utils.experiments watermark --profile imagenet --device cuda --n 20 --out "$out/watermark.json" || status=1
echo "runner: fingerprint"
"$PY" -m nullspace_utils.experiments fingerprint --profile imagenet --out "$out/fingerprint.json" || status=1
exit $status
