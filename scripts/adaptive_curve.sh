#!/usr/bin/env bash
# The adaptive profiling-cost curve of docs/adaptive.md: random against adaptive probes at 10-200 probes per new
# LLM, 20 trials of seed 11, on mmlu-pro and routerbench-subset, with the paired comparison against random at twice
# the count (report.md). Usage, from the repository root after `make install`:
#   bash scripts/adaptive_curve.sh [OUT]          (default OUT: runs/adaptive)
# JOBS (default 1) processes per dataset; the two datasets run one after the other.
set -euo pipefail
out=${1:-runs/adaptive}
u=${UNIROUTER:-$PWD/.venv/bin/unirouter}
jobs=${JOBS:-1}
trials=${TRIALS:-20}
mkdir -p "$out"

# curve NAME DATASET [extra fit options]
curve() {
  local run="$out/$1" ds=$2
  shift 2
  $u -q fit --dataset "$ds" --trials "$trials" --seed 11 --jobs "$jobs" --val-sizes 10,25,50,100,200 \
    --probe-strategies random,adaptive -r zero -r knn -r uniroute-kmeans -r foldin --run-dir "$run" --resume "$@"
  $u -q evaluate --run-dir "$run" --jobs "$jobs"
  $u -q report --run-dir "$run" --reference zero
}
curve mmlu-pro-adaptive mmlu-pro
curve routerbench-subset-adaptive routerbench-subset
