#!/usr/bin/env bash
# The runs behind the docs/ numbers that `make reproduce` does not make (longer sweeps), then the
# blocks of docs/probes.md and docs/using-a-router.md they fill. Usage, from the repository root after
# `make install`:
#   bash scripts/readme_runs.sh [OUT]            (default OUT: runs/readme)
# The numbers of `make reproduce` (docs/results.md, README.md's timing) go in with
#   .venv/bin/python scripts/readme_tables.py runs/reproduce-<timestamp>
set -euo pipefail
out=${1:-runs/readme}
u=${UNIROUTER:-$PWD/.venv/bin/unirouter}
py=${PYTHON:-$PWD/.venv/bin/python}
jobs=${JOBS:-2}
mkdir -p "$out"

# probe_sweep NAME DATASET SIZES: the profiling-cost curve, 50 fresh trials (seed 1), every dynamic router
probe_sweep() {
  local run="$out/$1"
  $u -q fit --dataset "$2" --trials 50 --seed 1 --jobs "$jobs" --val-sizes "$3" \
    --probe-strategies random,stratified,informative -r zero -r knn -r uniroute-kmeans -r uniroute-learnedmap \
    -r foldin --run-dir "$run" --resume
  $u -q evaluate --run-dir "$run" --jobs "$jobs"
  $u -q report --run-dir "$run" --reference zero
  $u -q plot --run-dir "$run" --reference zero
}
probe_sweep mmlu-pro-probes-50 mmlu-pro 50,100,200,400
# the same strategies on routerbench-subset (25-200 probes: its validation reserve is smaller)
probe_sweep routerbench-subset-probes-50 routerbench-subset 25,50,100,200

# ZeroRouter over the paper's 400 trials under the coverage policy (CHANGELOG.md quotes its mean Area)
run="$out/mmlu-pro-zero-400"
$u -q fit --dataset mmlu-pro --trials 400 --seed 0 --jobs "$jobs" -r zero --run-dir "$run" --resume
$u -q evaluate --run-dir "$run" --jobs "$jobs"

# "Use a router": hold out gpt-4 and 300 prompts, build, add it from 100 probes, route
UNIROUTER="$u" PYTHON="$py" bash scripts/use_a_router/run.sh uniroute-kmeans "$out/use-a-router"

$py scripts/readme_tables.py "mmlu-pro-probes-50=$out/mmlu-pro-probes-50" \
  "routerbench-subset-probes-50=$out/routerbench-subset-probes-50" \
  --text "use-a-router=$out/use-a-router/table.md"
$py - "$out/mmlu-pro-zero-400/metrics.csv" <<'PY'
import sys, pandas as pd
m = pd.read_csv(sys.argv[1])
print(f"zero, 400 trials: mean Area {m['area'].mean():.4f}; n_test {m['n_test'].min()}..{m['n_test'].max()}")
PY
