"""``unirouter router serve``: check every option, bind the socket, run the application under uvicorn.

Everything a request would trip over is checked before the server listens: the port range, the router
directory, the default routing options against the router, the upstreams. The socket is bound here (with
the given backlog), so an address in use or a port without permission is one line, not a traceback.
uvicorn runs one event loop (uvloop where installed: it halves the server's CPU time per request) with the
``GuardedH11Protocol`` (request-head timeout, connection cap) and no access log of its own (the application
writes one JSON line per request).
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, install_hint
from .routing import CLI_NAMES

EXTRA_HINT = install_hint("serve")


def require_extra() -> None:
    """One line naming the extra when the server's libraries are missing."""
    missing = []
    for mod in ("starlette", "uvicorn", "httpx", "pydantic"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ConfigError(f"`router serve` needs {', '.join(missing)}: {EXTRA_HINT}")


@dataclass
class Limits:
    """Connection and request limits (docs/serving.md)."""

    backlog: int = 1024
    max_connections: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: int = 5
    max_body: int = 8 << 20


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected a TCP port in 0..65535 (0 = any free port)")


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6), or a one-line ConfigError."""
    check_port(port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host!r}: cannot resolve the address ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.setblocking(False)
    return sock


def check_defaults(router: Any, defaults: dict[str, Any]) -> None:
    """The server's default routing options work with this router (else every request would fail). Without
    a default rule each request must give one; the pool and the cap are checked with lambda 0 then."""
    rule = ("lam", "mean_cost", "min_quality", "max_cost")
    kw = dict(defaults) if any(defaults.get(k) is not None for k in rule) else {**defaults, "lam": 0.0}
    router.route(["unirouter option check"], ["0"], names=CLI_NAMES, **kw)


def make_live(router_dir: str | Path, defaults: dict[str, Any], upstreams: dict) -> Any:
    """The served router; a reload is refused when the defaults or the named upstreams no longer fit it."""
    from .live import LiveRouter
    from .router import load_router
    from .upstream import check_upstreams

    def accept(router: Any) -> None:
        check_defaults(router, defaults)
        check_upstreams(upstreams, router.models)

    return LiveRouter(router_dir, load_router, accept)


def uvicorn_server(app: Any, limits: Limits, log_level: str = "warning") -> Any:
    import uvicorn

    from .guard import GuardedH11Protocol

    proto = type("Guarded", (GuardedH11Protocol,), {"header_timeout": limits.header_timeout,
                                                    "max_connections": limits.max_connections})
    config = uvicorn.Config(app, http=proto, loop="auto", lifespan="on", access_log=False, log_level=log_level,
                            backlog=limits.backlog, timeout_keep_alive=limits.keep_alive,
                            h11_max_incomplete_event_size=64 * 1024, server_header=False, date_header=False)
    return uvicorn.Server(config)


def build(router_dir: str | Path, defaults: dict[str, Any], upstream_specs: list[str] | None,
          upstream_file: str | Path | None, limits: Limits, **settings: Any) -> tuple[Any, Any]:
    """(live router, ASGI app) with every option checked."""
    require_extra()
    from .app import ServeSettings, create_app
    from .upstream import parse_upstreams

    upstreams = parse_upstreams(upstream_specs, upstream_file)
    live = make_live(router_dir, defaults, upstreams)
    s = ServeSettings(defaults=defaults, upstreams=upstreams, max_body=limits.max_body,
                      body_timeout=limits.body_timeout, **settings)
    return live, create_app(live, s)


@contextlib.contextmanager
def running(app: Any, sock: socket.socket, limits: Limits) -> Iterator[Any]:
    """Run the app on ``sock`` in a background thread (for tests and benchmarks); stops on exit."""
    import threading
    import time

    server = uvicorn_server(app, limits)
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        t.join(10)


def serve(app: Any, sock: socket.socket, limits: Limits, banner: str) -> None:
    """Run in the foreground until SIGINT/SIGTERM."""
    server = uvicorn_server(app, limits)
    print(banner, file=sys.stderr, flush=True)
    server.run(sockets=[sock])
