#!/usr/bin/env bash
# What each part of the shelf renderer is worth: render a set without it, train the detector on
# that set, and measure every variant on cornershop-dev in one table. The variants:
#   full          the renderer as shipped
#   no-instore    catalogue cut-outs only (no in-store photo crops as product faces)
#   no-glass      no fridge doors (glass, frames, reflections, glare)
#   narrow-scale  products 70-160 px tall in the 1024 px working photo instead of 24-300 px
# Every variant gets the same photo count, seed, steps and validation set, so a short budget
# still compares like with like. Each stage resumes: run it again after a cut and it goes on.
#   bench/detector_ablation.sh [WORK_DIR] [STEPS] [COUNT] [VARIANT...]
# Environment: VENV, GROCERY, CORNERSHOP (the boxed photos), THREADS, VAL_COUNT (rendered
# validation photos, 40).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${VENV:-.venv}/bin"
work="${1:-/tmp/retailklip-detector-ablation}"
steps="${2:-450}"
count="${3:-600}"
shift $(($# < 3 ? $# : 3))
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
  variants=(full no-instore no-glass narrow-scale)
fi
grocery="${GROCERY:-../shared/data/grocery-store}"
photos="${CORNERSHOP:-../shared/data/cornershop-dev/photos}"
threads="${THREADS:-$(nproc)}"
val_count="${VAL_COUNT:-40}"
# A fifth of a short run warms up (the trainer's 300 steps would be most of one).
warmup=$((steps / 5 < 300 ? steps / 5 : 300))
warmup=$((warmup < 1 ? 1 : warmup))

declare -A flags=(
  [full]=""
  [no-instore]="--no-instore"
  [no-glass]="--no-glass"
  [narrow-scale]="--product-px 70,160"
)
for variant in "${variants[@]}"; do
  if [ -z "${flags[$variant]+set}" ]; then
    echo "detector_ablation: unknown variant '$variant' (known: ${!flags[*]})" >&2
    exit 2
  fi
done

"$bin/retailklip" render-shelves --grocery "$grocery" --out "$work/val" --count "$val_count" --seed 999 \
  --workers "$threads"
models=()
for variant in "${variants[@]}"; do
  # shellcheck disable=SC2086 # the flags are words on purpose
  "$bin/retailklip" render-shelves --grocery "$grocery" --out "$work/$variant/shelves" \
    --count "$count" --seed 2 --workers "$threads" ${flags[$variant]}
  "$bin/retailklip" train-detector --data "$work/$variant/shelves" --val "$work/val" \
    --work-dir "$work/$variant/run" --steps "$steps" --warmup-steps "$warmup" \
    --eval-every "$steps" --val-images "$val_count" --threads "$threads" --workers 1
  cp "$work/$variant/run/detector.pt" "$work/$variant.pt"
  models+=(--model "$work/$variant.pt")
done
"$bin/python" -m bench.detector --photos "$photos" "${models[@]}" --no-baseline \
  --threads "$threads" --draw "$work/drawings" --json "$work/ablation.json"
