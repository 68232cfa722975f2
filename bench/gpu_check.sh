#!/usr/bin/env bash
# GPU check (python -m bench.gpu_check): CUDA vs CPU embeddings, encoder throughput at batch 1/8/32/128,
# /classify at concurrency 32, one AMP + channels_last training epoch; one table.
# Exits 2 at once without a GPU; the whole run is bounded by GPU_CHECK_TIMEOUT seconds (exit 124).
#   bench/gpu_check.sh [--device cuda|cpu] [--model M] [--photos DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
if [[ " $* " != *" --device cpu "* ]] && ! timeout 20 nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: nvidia-smi finds no GPU on this machine (add --device cpu for a dry run)" >&2
  exit 2
fi
exec timeout --kill-after=30 "${GPU_CHECK_TIMEOUT:-900}" "$python" -m bench.gpu_check "$@"
