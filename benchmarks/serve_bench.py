"""Throughput of `unirouter router serve` on its preview endpoint (POST /route, one prompt per request).

Builds a router on the bundled RouterBench subset (tfidf, uniroute-kmeans, seed 0) unless --router names one,
starts `python -m unirouter_cli router serve DIR --port 0 --lambda 0` in a subprocess (its JSON access log to a
file), and runs CLIENTS threads, each with one keep-alive HTTP/1.1 connection, posting
{"texts": [one real prompt]} for SECONDS seconds. Prints one JSON line: requests/s, latency p50/p99 (ms),
errors, and the server process's CPU time per request (``cpu_ms``; ``per_core_per_s`` = 1000 / cpu_ms is the
rate one core sustains, a figure other processes on the machine do not change). The client and the server share
the machine (2 cores here: one busy serving, one sending).

    python benchmarks/serve_bench.py [--seconds 5] [--clients 8] [--router DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def build_router(out: Path) -> Path:
    from unirouter_cli.serving.build import build

    return build("routerbench-subset", seed=0).save(out)


def prompts(n: int = 2000) -> list[str]:
    import pandas as pd

    from unirouter_cli.data.registry import BUNDLED_DIR

    texts = pd.read_parquet(BUNDLED_DIR / "routerbench-subset" / "prompts.parquet")["text"].astype(str)
    return [t[:2000] for t in texts.head(n)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, texts: list[str], seconds: float, clients: int) -> dict:
    stop = time.monotonic() + seconds
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = k
        while time.monotonic() < stop:
            body = json.dumps({"texts": [texts[i % len(texts)]]}).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/route", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            lat[k].append(time.perf_counter() - t0)
            if resp.status != 200:
                errors[k] += 1
            i += clients
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = sorted(x for part in lat for x in part)
    n = len(all_lat)
    return {"requests": n, "requests_per_s": n / wall, "p50_ms": 1000 * all_lat[n // 2],
            "p99_ms": 1000 * all_lat[min(n - 1, int(0.99 * n))], "errors": sum(errors)}


def run(router: Path, seconds: float, clients: int, repeats: int) -> dict:
    texts = prompts()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "access.jsonl"
        cmd = [sys.executable, "-m", "unirouter_cli", "router", "serve", str(router), "--port", "0", "--lambda", "0",
               "--access-log", str(log)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()
            if "serving" not in line:
                raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
            port = int(line.split(" on ")[1].split()[0].rsplit(":", 1)[1])
            load(port, texts, 1.0, clients)  # warm-up
            runs = []
            for _ in range(repeats):
                cpu0 = cpu_seconds(proc.pid)
                r = load(port, texts, seconds, clients)
                r["cpu_ms"] = 1000 * (cpu_seconds(proc.pid) - cpu0) / max(r["requests"], 1)
                runs.append(r)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        lines = sum(1 for _ in log.open())
    best: dict = {k: statistics.median(r[k] for r in runs) for k in ("requests_per_s", "p50_ms", "p99_ms", "cpu_ms")}
    best["per_core_per_s"] = 1000 / best["cpu_ms"]
    return {**{k: round(v, 2) for k, v in best.items()}, "errors": sum(r["errors"] for r in runs),
            "runs": [round(r["requests_per_s"], 1) for r in runs], "access_log_lines": lines,
            "clients": clients, "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--router", type=Path, default=None, help="router directory (default: build one)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        router = a.router or build_router(Path(tmp) / "router")
        print(json.dumps(run(router, a.seconds, a.clients, a.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
