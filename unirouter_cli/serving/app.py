"""The ASGI application of ``unirouter router serve`` (Starlette).

Endpoints: ``POST /route`` (which LLM each prompt would go to: a dry run), ``POST /v1/chat/completions``
(route the last user message and forward the request to the chosen LLM's OpenAI-compatible upstream, with
an ordered fallback), ``GET /v1/models``, ``GET /info``, ``GET /health``, ``GET /metrics``. Every error is a
JSON body ``{"error": "one line", "status": N}``. docs/serving.md describes the schemas and headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import UnirouterError
from .guard import RequestGuard
from .live import LiveRouter
from .observe import AccessLog, Metrics
from .schemas import BadRequest, ChatRequest, RouteRequest, parse_json, validate
from .upstream import Upstream, UpstreamFailure, forward, passthrough_headers, upstream_for

log = logging.getLogger("unirouter.serve")
JSON_NAMES = {"lambda": "'lambda'", "mean_cost": "'mean_cost'", "max_cost": "'max_cost'",
              "min_quality": "'min_quality'", "pool": "'pool'"}
INLINE_PROMPTS = 8  # larger /route batches run in a worker thread, off the event loop
PATHS = ("/route", "/v1/chat/completions", "/v1/models", "/info", "/health", "/metrics")


@dataclass
class ServeSettings:
    """Everything the application needs besides the router directory."""

    defaults: dict[str, Any] = field(default_factory=dict)  # DeployedRouter.route keywords
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    max_attempts: int = 3  # LLMs tried per chat request (the chosen one, then fallbacks)
    reload_interval: float = 1.0  # seconds between directory checks (0 = only on SIGHUP)
    max_body: int = 8 << 20
    body_timeout: float = 30.0
    access_log: AccessLog = field(default_factory=AccessLog)
    route_threads: int = 2


def _header(v: object) -> str:
    return quote(str(v), safe=" !#$%&'()*+,-./:;<=>?@[]^_`{|}~")


def _num(v: float) -> str:
    return f"{v:.6g}"


def create_app(live: LiveRouter, settings: ServeSettings) -> Starlette:
    metrics = Metrics()
    access = settings.access_log
    limiter = anyio.CapacityLimiter(settings.route_threads)
    state: dict[str, Any] = {"client": None, "wake": None}

    def route(router: Any, texts: list[str], ids: list[str], options: Any, ranked: bool = False) -> list[dict]:
        kw = options.choice(settings.defaults) if options is not None else dict(settings.defaults)
        return router.route(texts, ids, names=JSON_NAMES, ranked=ranked, **kw)

    async def route_ep(request: Request) -> Response:
        req = validate(RouteRequest, parse_json(await request.body()))
        ids, texts = req.ids_texts()
        served = live.current
        if len(texts) <= INLINE_PROMPTS:
            routes = route(served.router, texts, ids, req)
        else:
            routes = await anyio.to_thread.run_sync(lambda: route(served.router, texts, ids, req), limiter=limiter)
        metrics.chosen("route", [r["model"] for r in routes])
        entry = request.scope["state"]["log"]
        entry.update(prompts_routed=len(routes), version=served.version, prompts=texts)
        if len(routes) == 1:
            entry.update(model=routes[0]["model"], p_correct=routes[0]["p_correct"], cost=routes[0]["cost"])
        return JSONResponse({"routes": routes, "router_version": served.version})

    async def chat_ep(request: Request) -> Response:
        raw = parse_json(await request.body())
        req = validate(ChatRequest, raw)
        served = live.current
        router = served.router
        entry = request.scope["state"]["log"]
        if not settings.upstreams:
            raise HTTPException(503, "no upstreams configured (start the server with --upstream NAME=URL or "
                                     "--upstreams FILE)")
        if req.model == "auto":
            try:
                text = req.prompt()
            except ValueError as e:
                raise BadRequest(str(e)) from None
            r = route(router, [text], ["0"], req.unirouter, ranked=True)[0]
            mode = "auto"
        elif req.model in router.models:
            if req.unirouter is not None:
                raise BadRequest("'unirouter': routing options apply to model \"auto\" only")
            try:
                text = req.prompt()
            except ValueError:  # no user text: the LLM's estimate on an empty prompt
                text = ""
            r = router.route([text], ["0"], lam=0.0, pool=[req.model], names=JSON_NAMES, ranked=True)[0]
            mode = "direct"
        else:
            raise BadRequest(f"'model': {req.model!r} is neither \"auto\" nor an LLM of this router "
                             f"(it has {', '.join(router.models)})")
        metrics.chosen("chat", [r["model"]])
        entry.update({"mode": mode, "chosen": r["model"], "lambda": r["lambda"], "version": served.version,
                      "prompts": [text]})
        body = {k: v for k, v in raw.items() if k != "unirouter"}
        candidates = [c for c in r["ranking"] if upstream_for(settings.upstreams, c["model"]) is not None]
        candidates = candidates[:settings.max_attempts]
        if not candidates:
            raise HTTPException(502, f"no upstream for LLM {r['model']!r} or any fallback (add --upstream "
                                     f"'{r['model']}=URL' or a '*' entry)")
        failures: list[str] = []
        for attempt, c in enumerate(candidates, 1):
            up = upstream_for(settings.upstreams, c["model"])
            assert up is not None
            t0 = time.perf_counter()
            try:
                resp = await forward(state["client"], up, c["model"], body, req.stream)
            except UpstreamFailure as e:
                metrics.upstream_error(c["model"], e.kind)
                failures.append(f"{c['model']}: {e}")
                continue
            metrics.upstream(c["model"], "ok" if resp.status_code < 400 else f"http_{resp.status_code}")
            if attempt > 1:
                metrics.fallback()
            headers = {**passthrough_headers(resp), "x-unirouter-model": _header(c["model"]),
                       "x-unirouter-p-correct": _num(c["p_correct"]), "x-unirouter-cost": _num(c["cost"]),
                       "x-unirouter-lambda": _num(r["lambda"]), "x-unirouter-routing": mode,
                       "x-unirouter-attempts": str(attempt), "x-unirouter-router-version": served.version}
            if r.get("expected_mean_cost") is not None:
                headers["x-unirouter-expected-mean-cost"] = _num(r["expected_mean_cost"])
            if attempt > 1:
                headers["x-unirouter-chosen-model"] = _header(r["model"])
            entry.update(model=c["model"], p_correct=c["p_correct"], cost=c["cost"], attempts=attempt,
                         upstream_status=resp.status_code, upstream_ms=round(1000 * (time.perf_counter() - t0), 2))
            if failures:
                entry["upstream_failures"] = failures
            if req.stream:
                return StreamingResponse(relay(resp, c["model"], entry), status_code=resp.status_code,
                                         headers=headers)
            content = await resp.aread()
            return Response(content, status_code=resp.status_code, headers=headers)
        entry["upstream_failures"] = failures
        raise HTTPException(502, f"every upstream failed ({len(failures)} tried): {'; '.join(failures)}")

    async def relay(resp: Any, model: str, entry: dict) -> AsyncIterator[bytes]:
        """The upstream's stream, chunk by chunk; an upstream that breaks off ends the stream (logged)."""
        import httpx

        try:
            async for chunk in resp.aiter_bytes():
                yield chunk
        except httpx.HTTPError as e:
            metrics.upstream_error(model, "stream")
            entry["error"] = f"upstream stream broke off ({type(e).__name__})"
        finally:
            await resp.aclose()

    async def models_ep(request: Request) -> Response:
        names = ["auto", *live.current.router.models]
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "unirouter"}
                                                        for n in names]})

    async def info_ep(request: Request) -> Response:
        served = live.current
        info = await anyio.to_thread.run_sync(served.router.info, limiter=limiter)
        info["served"] = {"version": served.version, "loaded_at": round(served.loaded_at, 3),
                          "reloads": live.reloads, "last_reload_error": live.last_error,
                          "upstreams": {n: u.url for n, u in sorted(settings.upstreams.items())},
                          "defaults": {("lambda" if k == "lam" else k): v for k, v in settings.defaults.items()
                                       if v is not None}}
        return JSONResponse(info)

    async def health_ep(request: Request) -> Response:
        return JSONResponse({"ok": True, "version": live.current.version})

    async def metrics_ep(request: Request) -> Response:
        served = live.current
        return PlainTextResponse(metrics.render(served.version, len(served.router.models)),
                                 media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        msg = exc.detail
        if exc.status_code == 404:
            msg = f"no such path {request.url.path[:200]}; the server has {', '.join(PATHS)}"
        elif exc.status_code == 405:
            msg = f"method {request.method} is not allowed on {request.url.path}; use {exc.headers.get('Allow')}"
        return JSONResponse({"error": msg, "status": exc.status_code}, exc.status_code, headers=exc.headers)

    async def user_error(request: Request, exc: Exception) -> Response:
        request.scope["state"]["log"]["error"] = msg = " ".join(str(exc).split())
        return JSONResponse({"error": msg, "status": 400}, 400)

    async def disconnected(request: Request, exc: Exception) -> Response:
        request.scope["state"]["log"]["error"] = "client disconnected"
        return Response(status_code=499)

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log",
                             "status": 500}, 500)

    async def watch() -> None:
        wake: asyncio.Event = state["wake"]
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), settings.reload_interval or None)
            forced = wake.is_set()
            wake.clear()
            try:
                outcome = await anyio.to_thread.run_sync(functools.partial(live.check, force=forced))
            except Exception as e:  # noqa: BLE001 - a failed reload keeps the served router
                log.error("reload of %s failed", live.path, exc_info=e)
                outcome = "error"
            if outcome != "unchanged":
                metrics.reload(outcome)
                access.write({"event": "reload", "outcome": outcome, "version": live.current.version,
                              "llms": len(live.current.router.models),
                              **({"error": live.last_error} if outcome == "refused" else {})})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import httpx

        state["client"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        state["wake"] = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, state["wake"].set)  # main thread only
        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
                loop.remove_signal_handler(signal.SIGHUP)
            await state["client"].aclose()

    app = Starlette(
        routes=[Route("/route", route_ep, methods=["POST"]), Route("/v1/chat/completions", chat_ep, methods=["POST"]),
                Route("/v1/models", models_ep), Route("/info", info_ep), Route("/health", health_ep),
                Route("/metrics", metrics_ep)],
        exception_handlers={HTTPException: http_error, UnirouterError: user_error, ClientDisconnect: disconnected,
                            Exception: internal},
        lifespan=lifespan)
    app.state.live, app.state.metrics, app.state.wake = live, metrics, state

    def done(scope: dict, status: int, seconds: float) -> None:
        path = scope.get("path", "")
        label = path if path in PATHS else "other"
        metrics.request(scope.get("method", "?"), label, status, seconds)
        entry = scope.get("state", {}).get("log", {})
        client = scope.get("client") or ("", 0)
        access.write({"method": scope.get("method"), "path": path[:200], "status": status,
                      "ms": round(1000 * seconds, 3), "client": client[0], **entry})

    return RequestGuard(app, settings.max_body, settings.body_timeout, done)  # type: ignore[return-value]
