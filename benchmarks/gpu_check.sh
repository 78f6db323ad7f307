#!/usr/bin/env bash
# gpu_check.sh - what a person with one CUDA GPU runs (under 10 minutes) to check the papers' benchmarks there:
#
#   1. the tiny budgets of nyuv2-weighting, cityscapes-weighting and celeba-weighting on the GPU, on a few synthetic
#      files in each dataset's official layout (no download);
#   2. stacked seeds == solo runs on the GPU (4 seeds of a small SegNet-MTAN, equal weights and Nash-MTL);
#   3. training images per second of the full SegNet-MTAN (44.2 M parameters, 288 x 384, batch 2 per seed):
#      one solo run against 4 stacked seeds, as a Markdown table - the number docs/scaling.md asks for.
#
#   bash benchmarks/gpu_check.sh                 # DEVICE=cuda by default: mtlab's train.device, nothing hard-coded
#   DEVICE=mps bash benchmarks/gpu_check.sh      # any train.device value (auto, cuda, mps, cpu)
#   MTLAB=.venv/bin/mtlab PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#   STUDIES=cityscapes-weighting:cityscapes SPEED_ARGS="--filters 4 --size 32x32" DEVICE=cpu bash ...  # a CPU smoke run
#
# Needs mtlab installed with a CUDA build of torch (pip install torch --index-url https://download.pytorch.org/whl/cu124).
# Writes under $OUT (default: a new temporary directory) and prints where; exits non-zero if a step fails.
set -euo pipefail

DEVICE="${DEVICE:-cuda}"
PYTHON="${PYTHON:-python}"
MTLAB="${MTLAB:-mtlab}"
OUT="${OUT:-$(mktemp -d -t mtlab-gpu-check-XXXXXX)}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$OUT"
echo "mtlab GPU check: train.device=$DEVICE, output in $OUT"

"$PYTHON" - "$DEVICE" <<'EOF'
import sys
import torch
from mtlab.train.device import resolve_device
device = resolve_device(sys.argv[1])
name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
print(f"torch {torch.__version__}, device {device} ({name})")
if sys.argv[1] == "cuda" and device.type != "cuda":
    sys.exit("no CUDA device: install a CUDA build of torch, or set DEVICE")
EOF

echo
echo "== 1. tiny budgets on $DEVICE (synthetic files in the official layouts)"
for pair in ${STUDIES:-nyuv2-weighting:nyuv2 cityscapes-weighting:cityscapes celeba-weighting:celeba}; do
  study="${pair%%:*}"
  dataset="${pair##*:}"
  # The dataset's own example files (what the tests load), and the data options that point at them.
  overrides=$("$PYTHON" - "$dataset" "$OUT/data" <<'EOF'
import sys
from pathlib import Path
import mtlab.config.schema  # noqa: F401  (assembling the config registers every dataset)
from mtlab.config.base import DATASETS
options = DATASETS.get(sys.argv[1]).example(sys.argv[1], Path(sys.argv[2]))
print(" ".join(f"data.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items() if k != "dataset"))
EOF
)
  start=$(date +%s)
  # shellcheck disable=SC2086  # the overrides are separate KEY=VALUE words
  "$MTLAB" run "$study" --budget tiny --out "$OUT/$study" train.device="$DEVICE" $overrides > "$OUT/$study.log" 2>&1 \
    || { echo "FAILED: $study (see $OUT/$study.log)"; exit 1; }
  echo "$study: tiny budget done in $(( $(date +%s) - start )) s -> $OUT/$study/report.html"
done

echo
echo "== 2. stacked seeds == solo runs on $DEVICE"
"$PYTHON" "$HERE/dense_gpu.py" check --device "$DEVICE" --seeds 4
"$PYTHON" "$HERE/dense_gpu.py" check --device "$DEVICE" --seeds 4 --method nash_mtl

echo
echo "== 3. SegNet-MTAN training images per second on $DEVICE: solo vs 4 stacked seeds"
# shellcheck disable=SC2086  # SPEED_ARGS: extra options, e.g. "--filters 4 --size 32x32" for a CPU smoke run
"$PYTHON" "$HERE/dense_gpu.py" speed --device "$DEVICE" --seeds 4 --images 32 ${SPEED_ARGS:-}
echo
echo "Put the solo images/s into docs/scaling.md section 5 (hours = training images / images per second)."
