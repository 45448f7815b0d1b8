#!/usr/bin/env bash
# The adaptive profiling-cost curve of docs/adaptive.md: random against adaptive probes at 10-200 probes per new
# LLM, 20 trials of seed 11, on mmlu-pro and routerbench-subset, with the paired comparison against random at twice
# the count (report.md), and the same with the strongest LLMs unseen.
# Usage, from the repository root after `make install`:
#   bash scripts/adaptive_curve.sh [OUT]          (default OUT: runs/adaptive)
# JOBS (default 1) processes per run; the runs go one after the other.
set -euo pipefail
out=${1:-runs/adaptive}
u=${UNIROUTER:-$PWD/.venv/bin/unirouter}
jobs=${JOBS:-1}
trials=${TRIALS:-20}
mkdir -p "$out"

# curve NAME DATASET SIZES TRIALS [extra fit options]
curve() {
  local run="$out/$1" ds=$2 sizes=$3 n=$4
  shift 4
  $u -q fit --dataset "$ds" --trials "$n" --seed 11 --jobs "$jobs" --val-sizes "$sizes" \
    --probe-strategies random,adaptive -r zero -r knn -r uniroute-kmeans -r foldin --run-dir "$run" --resume "$@"
  $u -q evaluate --run-dir "$run" --jobs "$jobs"
  $u -q report --run-dir "$run" --reference zero
}
curve mmlu-pro-adaptive mmlu-pro 10,25,50,100,200 "$trials"
curve routerbench-subset-adaptive routerbench-subset 10,25,50,100,200 "$trials"
# extrapolation: the most accurate LLMs (as many as the default unseen pool holds) are the unseen pool
curve mmlu-pro-strongest mmlu-pro 25,50,100 10 --unseen-strongest 16
curve routerbench-subset-strongest routerbench-subset 25,50,100 "$trials" --unseen-strongest 4
# the paired tables, into docs/adaptive.md (between its markers) and OUT/tables.md
"${PYTHON:-$PWD/.venv/bin/python}" scripts/adaptive_tables.py --write docs/adaptive.md "$out/mmlu-pro-adaptive" "$out/routerbench-subset-adaptive" \
  "$out/mmlu-pro-strongest" "$out/routerbench-subset-strongest" > "$out/tables.md"
