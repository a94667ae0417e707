#!/usr/bin/env bash
# The 3SyncMNIST ablation rows and the Conv+LSTM baseline at one equal budget (docs/syncmnist.md,
# "Ablations at an equal budget"): the --quick recipe, 6,000 steps of 16 fresh videos each,
# 2,000 test videos, final weights; two runs at a time, one thread each. Resumable: run it again
# after an interruption and every run continues from its checkpoint (finished runs are skipped).
# Usage: bash tools/syncmnist_ablations.sh [OUT_ROOT]   (default runs/ablations)
set -euo pipefail
root=${1:-runs/ablations}
mkdir -p "$root"
budget=(--quick --fresh-data --epochs 4 --steps-per-epoch 1500 --lr 1e-3 --test-videos 2000 --threads 1
        --ckpt-steps 500 --progress none --no-plot)

one() {  # name, extra flags...
  local name=$1; shift
  local out="$root/$name"
  if [[ -f "$out/result.json" ]]; then echo "$name: done"; return; fi
  local resume=()
  [[ -f "$out/checkpoint.pt" ]] && resume=(--resume)
  echo "$name: start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  rstg-fast syncmnist "${budget[@]}" --out "$out" "${resume[@]}" "$@" > "$root/$name.log" 2>&1
  echo "$name: end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
}

pairs=("all_time_stages:--schedule all_time_stages" "conv_lstm:--model conv_lstm"
       "space_only:--schedule space_only" "time_only:--schedule time_only"
       "homogeneous:--schedule homogeneous" "one_time_stage:--schedule one_time_stage")
for ((i = 0; i < ${#pairs[@]}; i += 2)); do
  a=${pairs[i]}; b=${pairs[i + 1]}
  # shellcheck disable=SC2086
  one "${a%%:*}" ${a#*:} &
  # shellcheck disable=SC2086
  one "${b%%:*}" ${b#*:} &
  wait
done
