#!/usr/bin/env bash
# The "Use a router" walk-through (README.md, docs/using-a-router.md), end to end, in a scratch folder:
#   bash scripts/use_a_router/run.sh [ROUTER] [FOLDER]
# Holds one LLM and 300 prompts out of routerbench-subset, builds a router on the rest, adds the
# held-out LLM from its real answers on 100 probes, routes the 300 held-out texts and scores the routes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
router=${1:-uniroute-kmeans}
work=${2:-$(mktemp -d)}
unirouter=${UNIROUTER:-unirouter}
python=${PYTHON:-python}
mkdir -p "$work" && cd "$work"
$python "$here/heldout.py"
$unirouter -q router build --dataset rb-table --router "$router" --seed 0 --out my-router --force
$unirouter -q router probes my-router -n 100 --out probes.csv
$python "$here/answers.py"
$unirouter -q router add-llm my-router --model gpt-4-1106-preview --cost 0.005015 --answers answers.csv
for lam in 0 30 100 1000 10000; do
  $unirouter -q router route my-router --prompts new-prompts.jsonl --lambda $lam --out routes-lambda-$lam.jsonl
done
$unirouter -q router route my-router --prompts new-prompts.jsonl --mean-cost 0.001 --out routes-mean-cost.jsonl
$unirouter -q router route my-router --prompts new-prompts.jsonl --max-cost 0.001 --out routes-max-cost.jsonl
$unirouter -q router route my-router --prompts new-prompts.jsonl --min-quality 0.8 --out routes-min-quality.jsonl
$unirouter -q router route my-router --prompts new-prompts.jsonl --lambda 0 \
  --pool mistralai/mixtral-8x7b-chat,gpt-3.5-turbo-1106 --out routes-pool.jsonl
$python "$here/score.py" routes-lambda-0.jsonl routes-lambda-30.jsonl routes-lambda-100.jsonl \
  routes-lambda-1000.jsonl routes-lambda-10000.jsonl routes-mean-cost.jsonl routes-max-cost.jsonl \
  routes-min-quality.jsonl routes-pool.jsonl \
  | tee table.md
echo "router: $router; table in $work/table.md"
