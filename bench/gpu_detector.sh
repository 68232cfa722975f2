#!/usr/bin/env bash
# The product detector on a lent GPU, in one go: render shelves on every CPU core, train with AMP
# on CUDA, export the graph (checked against PyTorch), evaluate it on cornershop-dev beside the
# no-training floor. Every stage resumes: run it again after a cut and it goes on.
# Exits 2 at once without a GPU.
#   bench/gpu_detector.sh [WORK_DIR] [STEPS] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${VENV:-.venv}/bin"
work="${1:-/tmp/retailklip-detector-gpu}"
steps="${2:-8000}"
batch="${3:-16}"
if ! timeout 20 nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_detector: nvidia-smi finds no GPU on this machine" >&2
  exit 2
fi
grocery="${GROCERY:-../shared/data/grocery-store}"
photos="${CORNERSHOP:-../shared/data/cornershop-dev/photos}"
"$bin/retailklip" render-shelves --grocery "$grocery" --out "$work/val" --count 80 --seed 999 \
  --workers "$(nproc)"
"$bin/retailklip" render-shelves --grocery "$grocery" --out "$work/shelves" --count 5000 --seed 2 \
  --workers "$(nproc)"
"$bin/retailklip" train-detector --data "$work/shelves" --val "$work/val" --work-dir "$work/run" \
  --steps "$steps" --batch-size "$batch" --workers 6 --device cuda --precision auto \
  --snapshot-every 1000
"$bin/retailklip" export-detector --checkpoint "$work/run/detector.pt" \
  --out "$work/retailklip-detector-lite0.onnx" --model-id retailklip-detector-lite0
"$bin/python" -m bench.detector --photos "$photos" --model "$work/retailklip-detector-lite0.onnx" \
  --draw "$work/drawings"
