"""The CLI against the same computation done in one plain script: zero, knn and uniroute-kmeans on mmlu-pro.

``plain`` loads the bundled table and its tfidf embeddings once, draws the same trials (seed 0) as
``unirouter fit``, and in two forked worker processes (one BLAS thread each, like the CLI's workers) fits
the three routers with the same in-trial hyperparameter selection and computes the same exact deferral
curves and metrics on the unseen pool. It calls the package's numeric functions directly (K-means,
neighbour search, selection, curves), so its Areas must equal the CLI's to the last bit; what it leaves
out is what the CLI adds: process start-up, dataset validation, the worker pool, run-directory files.

    python benchmarks/plain_numpy.py [TRIALS]      # both, interleaved, BENCH_REPEATS times; prints the ratio
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTERS = ["zero", "knn", "uniroute-kmeans"]
_STATE: dict = {}  # what the forked workers inherit: dataset, embeddings, trials


def _one(t: int) -> list[tuple[int, str, float, float]]:
    from unirouter_cli.protocol.trial import evaluate_trial, fit_trial

    ds, X, trial = _STATE["ds"], _STATE["X"], _STATE["trials"][t]
    fitted, _ = fit_trial(ds, X, trial, ROUTERS)
    rows, _, _, _ = evaluate_trial(ds, X, trial, fitted, "unseen")
    return [(r["trial"], r["router"], r["area"], r["qnc"]) for r in rows]


def plain(trials: int, jobs: int = 2) -> dict:
    """Wall seconds of the whole script body (loading included) and the metrics rows."""
    import multiprocessing

    t0 = time.perf_counter()
    from unirouter_cli.runs.executors import one_thread

    one_thread()
    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.embed.encoders import get_embeddings
    from unirouter_cli.protocol.universe import SplitConfig, make_trial

    ds = load_dataset("mmlu-pro")
    X = get_embeddings(ds, "tfidf")
    _STATE.update(ds=ds, X=X, trials=[make_trial(ds, SplitConfig(), 0, t) for t in range(trials)])
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        rows = [r for part in pool.map(_one, range(trials), chunksize=1) for r in part]
    return {"wall_s": time.perf_counter() - t0, "rows": rows}


def cli(trials: int, run: Path, jobs: int = 2) -> dict:
    """Wall seconds of ``unirouter fit`` + ``unirouter evaluate`` (two processes, as a user runs them)."""
    base = [sys.executable, "-m", "unirouter_cli", "-q"]
    fit = base + ["fit", "--dataset", "mmlu-pro", "--trials", str(trials), "--jobs", str(jobs), "--run-dir", str(run)]
    fit += sum((["--router", r] for r in ROUTERS), [])
    t0 = time.perf_counter()
    subprocess.run(fit, check=True, capture_output=True, cwd=ROOT)
    t1 = time.perf_counter()
    subprocess.run(base + ["evaluate", "--run-dir", str(run), "--jobs", str(jobs)], check=True, capture_output=True,
                   cwd=ROOT)
    t2 = time.perf_counter()
    return {"wall_s": t2 - t0, "fit_s": t1 - t0, "evaluate_s": t2 - t1}


def same_numbers(rows: list[tuple[int, str, float, float]], run: Path) -> bool:
    """Area and QNC of every (trial, router) equal (bit for bit) between the plain script and the CLI's run."""
    import pandas as pd

    m = pd.read_csv(run / "metrics.csv")
    cli_rows = {(int(t), r): (a, q) for t, r, a, q in m[["trial", "router", "area", "qnc"]].itertuples(index=False)}
    return len(cli_rows) == len(rows) and all(cli_rows.get((t, r)) == (a, q) for t, r, a, q in rows)


def compare(trials: int, repeats: int) -> dict:
    """Both, interleaved ``repeats`` times (each plain run in its own process); medians and the ratio."""
    cli_s, plain_s, equal = [], [], True
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            cli_s.append(cli(trials, run)["wall_s"])
            out = subprocess.run([sys.executable, __file__, "--plain", str(trials)], check=True, capture_output=True,
                                 text=True, cwd=ROOT)
            p = json.loads(out.stdout.strip().splitlines()[-1])
            plain_s.append(p["wall_s"])
            equal = equal and same_numbers([tuple(r) for r in p["rows"]], run)
    c, p = statistics.median(cli_s), statistics.median(plain_s)
    return {"trials": trials, "cli_s": c, "plain_s": p, "ratio": c / p, "same_numbers": equal,
            "cli_runs": cli_s, "plain_runs": plain_s}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--plain":
        print(json.dumps(plain(int(sys.argv[2]))))
        return 0
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    r = compare(trials, int(os.environ.get("BENCH_REPEATS", "3")))
    print(f"{trials} trials of {', '.join(ROUTERS)} on mmlu-pro, --jobs 2: CLI fit + evaluate {r['cli_s']:.2f} s, "
          f"plain script {r['plain_s']:.2f} s (medians), ratio {r['ratio']:.2f}; "
          f"Area and QNC identical: {r['same_numbers']}")
    return 0 if r["same_numbers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
