"""Access log and metrics of the HTTP server.

``AccessLog`` writes one JSON object per request on one line (to stderr or a file): time, method, path,
status, latency, and for routed requests the chosen LLM, its estimated correctness and cost; prompt texts
only when asked for. ``Metrics`` keeps counters and a latency histogram in memory and renders them in the
Prometheus text exposition format (version 0.0.4) for ``GET /metrics``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from typing import IO, Any

# latency histogram bucket bounds, seconds
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AccessLog:
    """One JSON line per request. ``stream`` None = no log; ``prompts`` adds the routed texts."""

    def __init__(self, stream: IO[str] | None = sys.stderr, prompts: bool = False) -> None:
        self.stream, self.prompts = stream, prompts
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        if self.stream is None:
            return
        if not self.prompts:
            record.pop("prompts", None)
        line = json.dumps({"ts": round(time.time(), 3), **record}, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed log stream never fails a request
                pass


def _label(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple) -> str:
    return ",".join(f'{n}="{_label(v)}"' for n, v in zip(names, values, strict=True))


class Metrics:
    """Counters and a latency histogram, rendered in Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (method, path, status)
        self.choices: dict[tuple[str, str], int] = defaultdict(int)  # (endpoint, LLM) -> prompts routed to it
        self.upstream_requests: dict[tuple[str, str], int] = defaultdict(int)  # (LLM, outcome)
        self.upstream_errors: dict[tuple[str, str], int] = defaultdict(int)  # (LLM, kind)
        self.fallbacks = 0
        self.reloads: dict[str, int] = defaultdict(int)  # outcome -> count
        self.latency: dict[str, list[float]] = {}  # path -> bucket counts + [sum, count]

    def request(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, path, status)] += 1
            h = self.latency.setdefault(path, [0.0] * (len(BUCKETS) + 2))
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def chosen(self, endpoint: str, models: list[str]) -> None:
        with self._lock:
            for m in models:
                self.choices[(endpoint, m)] += 1

    def upstream(self, model: str, outcome: str) -> None:
        with self._lock:
            self.upstream_requests[(model, outcome)] += 1

    def upstream_error(self, model: str, kind: str) -> None:
        with self._lock:
            self.upstream_errors[(model, kind)] += 1

    def fallback(self) -> None:
        with self._lock:
            self.fallbacks += 1

    def reload(self, outcome: str) -> None:
        with self._lock:
            self.reloads[outcome] += 1

    def render(self, version: str, n_llms: int) -> str:
        out: list[str] = []

        def family(name: str, kind: str, doc: str, rows: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{{{lab}}} {val:g}" if lab else f"{name} {val:g}" for lab, val in rows)

        with self._lock:
            family("unirouter_requests_total", "counter", "HTTP requests by method, path and status.",
                   [(_labels(("method", "path", "status"), k), v) for k, v in sorted(self.requests.items())])
            family("unirouter_choices_total", "counter", "Prompts routed to each LLM, by endpoint.",
                   [(_labels(("endpoint", "model"), k), v) for k, v in sorted(self.choices.items())])
            family("unirouter_upstream_requests_total", "counter", "Requests forwarded upstream, by LLM and outcome.",
                   [(_labels(("model", "outcome"), k), v) for k, v in sorted(self.upstream_requests.items())])
            family("unirouter_upstream_errors_total", "counter", "Upstream failures (connect, timeout, status).",
                   [(_labels(("model", "kind"), k), v) for k, v in sorted(self.upstream_errors.items())])
            family("unirouter_fallbacks_total", "counter", "Requests answered by a fallback LLM.",
                   [("", self.fallbacks)])
            family("unirouter_router_reloads_total", "counter", "Router directory reloads by outcome.",
                   [(_labels(("outcome",), (k,)), v) for k, v in sorted(self.reloads.items())])
            family("unirouter_router_llms", "gauge", "LLMs in the served router.", [("", n_llms)])
            family("unirouter_router_info", "gauge", "The served router version (hash of its card).",
                   [(_labels(("version",), (version,)), 1)])
            out.append("# HELP unirouter_request_seconds Request latency in seconds, by path.")
            out.append("# TYPE unirouter_request_seconds histogram")
            for path, h in sorted(self.latency.items()):
                p = _label(path)
                for i, b in enumerate(BUCKETS):
                    out.append(f'unirouter_request_seconds_bucket{{path="{p}",le="{b:g}"}} {h[i]:g}')
                out.append(f'unirouter_request_seconds_bucket{{path="{p}",le="+Inf"}} {h[-1]:g}')
                out.append(f'unirouter_request_seconds_sum{{path="{p}"}} {h[-2]:.6f}')
                out.append(f'unirouter_request_seconds_count{{path="{p}"}} {h[-1]:g}')
        return "\n".join(out) + "\n"
