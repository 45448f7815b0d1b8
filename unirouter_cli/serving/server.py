"""A small HTTP endpoint for a router directory (standard library ``http.server``; JSON in, JSON out).

``POST /route`` with ``{"prompts": [{"prompt_id": "a", "text": "..."}, ...]}`` (or ``{"texts": [...]}``)
and at most one of ``"lambda"``, ``"max_cost"``, ``"min_quality"`` (else the server's default), plus an
optional ``"pool": [names]``; answers ``{"routes": [{prompt_id, model, p_correct, cost, lambda}]}``.
``GET /info`` returns ``DeployedRouter.info()``, ``GET /health`` ``{"ok": true}``. A bad request gets
status 400 and ``{"error": "one line"}``. The router is loaded once; requests only read it.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..errors import UnirouterError
from .router import DeployedRouter, load_router

MAX_BODY = 64 << 20  # bytes


class BadRequest(UnirouterError):
    pass


def handle_route(router: DeployedRouter, body: Any, defaults: dict) -> dict:
    """The /route answer for a decoded JSON body (raises ``UnirouterError`` on a bad request)."""
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object with 'prompts' (or 'texts')")
    if "prompts" in body:
        items = body["prompts"]
        if not isinstance(items, list) or not all(isinstance(p, dict) and isinstance(p.get("text"), str)
                                                  for p in items):
            raise BadRequest("'prompts' must be a list of {\"prompt_id\": ..., \"text\": \"...\"}")
        texts = [p["text"] for p in items]
        ids = [str(p.get("prompt_id", i)) for i, p in enumerate(items)]
    elif "texts" in body:
        texts = body["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("'texts' must be a list of strings")
        ids = [str(i) for i in range(len(texts))]
    else:
        raise BadRequest("expected 'prompts' (a list of {prompt_id, text}) or 'texts' (a list of strings)")
    keys = ("lambda", "max_cost", "min_quality")
    given = {k: body[k] for k in keys if body.get(k) is not None}
    choice = given or {k: defaults.get(k) for k in keys if defaults.get(k) is not None}
    for k, v in choice.items():
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise BadRequest(f"'{k}' must be a number")
    pool = body.get("pool", defaults.get("pool"))
    if pool is not None and (not isinstance(pool, list) or not all(isinstance(m, str) for m in pool)):
        raise BadRequest("'pool' must be a list of LLM names")
    routes = router.route(texts, ids, lam=choice.get("lambda"), max_cost=choice.get("max_cost"),
                          min_quality=choice.get("min_quality"), pool=pool)
    return {"routes": routes}


def make_server(router_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
                defaults: dict | None = None) -> ThreadingHTTPServer:
    router = load_router(router_dir)
    defaults = dict(defaults or {})
    if isinstance(defaults.get("pool"), str):  # the command line's comma-separated --pool
        defaults["pool"] = router.parse_pool(defaults["pool"])

    class Handler(BaseHTTPRequestHandler):
        server_version = "unirouter"

        def _send(self, status: int, obj: Any) -> None:
            data = (json.dumps(obj, ensure_ascii=False) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                self._send(200, {"ok": True})
            elif self.path == "/info":
                self._send(200, router.info())
            else:
                self._send(404, {"error": f"no such path {self.path}; use POST /route, GET /info or GET /health"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/route":
                self._send(404, {"error": f"no such path {self.path}; use POST /route"})
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
                if n <= 0 or n > MAX_BODY:
                    raise BadRequest(f"expected a JSON body of 1 to {MAX_BODY} bytes (Content-Length {n})")
                try:
                    body = json.loads(self.rfile.read(n).decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise BadRequest(f"body is not valid JSON ({type(e).__name__})") from e
                self._send(200, handle_route(router, body, defaults))
            except (UnirouterError, ValueError) as e:
                self._send(400, {"error": " ".join(str(e).split())})

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log on stderr
            return

    return ThreadingHTTPServer((host, port), Handler)
