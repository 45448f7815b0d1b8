"""Where the time of a run goes: start-up, loading, each router's fit and evaluation (``make bench``, section p).

``profile_run(run_dir)`` reads a finished run's timings.csv (fit seconds of each router in each trial) and its
per-trial evaluation files (seconds of each router's predict + curve + metrics in each trial); ``startup()``
times, in fresh processes, what every CLI process and every worker pays before its first trial: the interpreter
with the package imported, and the dataset with its embeddings loaded.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _seconds(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def startup(repeats: int = 3) -> list[list]:
    """Rows (what, median wall s): a bare interpreter, the CLI's --version, the run stage's imports, and the
    imports plus mmlu-pro with its tfidf embeddings loaded (a worker's set-up before its first trial)."""
    py = sys.executable
    load = ("from unirouter_cli.runs import rundir; from unirouter_cli.data.registry import load_dataset; "
            "from unirouter_cli.embed.encoders import get_embeddings; "
            "get_embeddings(load_dataset('mmlu-pro'), 'tfidf')")
    cases = [("python -c pass", [py, "-c", "pass"]),
             ("unirouter --version", [py, "-m", "unirouter_cli", "--version"]),
             ("import runs.rundir (a worker's imports)", [py, "-c", "from unirouter_cli.runs import rundir"]),
             ("imports + mmlu-pro + tfidf loaded", [py, "-c", load])]
    return [[what, _seconds(cmd, repeats)] for what, cmd in cases]


def profile_run(run_dir: Path) -> list[list]:
    """Rows per router: trials, fit s (median per trial, total), evaluate s (median per trial, total), share of the
    routers' total."""
    import pandas as pd

    t = pd.read_csv(run_dir / "timings.csv")
    fit = t[t["stage"] == "fit"].groupby("router")["seconds"]
    parts = [pd.read_parquet(f) for f in sorted((run_dir / "eval").glob("*/*.parquet"))]
    ev = pd.concat(parts, ignore_index=True).query("part == 'metrics'").groupby("router")["seconds_predict"]
    total = float(fit.sum().sum() + ev.sum().sum())
    rows = []
    for router in fit.sum().sort_values(ascending=False).index:
        f, e = fit.get_group(router), ev.get_group(router)
        rows.append([router, int(len(f)), float(f.median()), float(f.sum()), float(e.median()), float(e.sum()),
                     f"{100 * (f.sum() + e.sum()) / total:.0f}%"])
    return rows
