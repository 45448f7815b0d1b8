"""Limits every connection and request gets before the application sees it.

``GuardedH11Protocol`` (uvicorn's h11 protocol with three additions): a client must send a complete request
head within ``header_timeout`` seconds of connecting or of its previous response (a stalled or slow client is
disconnected), at most ``max_connections`` connections are open at once (the next one gets a JSON 503 and is
closed), and a malformed request gets a JSON 400 instead of uvicorn's text line.

``RequestGuard`` (ASGI middleware): a JSON 414 for a request target over ``MAX_URL`` bytes, 501 for a method
outside ``METHODS``, 413 for a body over ``max_body`` bytes (declared or streamed), 408 for a body not complete
``body_timeout`` seconds after the application starts reading it; it also times every request for the access
log and the metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h11
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_URL = 8192  # bytes of path + query
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def error_body(status: int, message: str) -> bytes:
    """The JSON error body every status gets (the same bytes as the application's JSONResponse)."""
    return json.dumps({"error": message, "status": status}, ensure_ascii=False, separators=(",", ":")).encode()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout, a connection cap and JSON error bodies."""

    header_timeout: float = 10.0
    max_connections: int = 512

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            self._reject(503, f"too many open connections (at most {self.max_connections}); retry later")
            return
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        cycle = self.cycle
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout, cycle)

    def _head_timeout(self, cycle: Any) -> None:
        self._head_timer = None
        if self.cycle is cycle and (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()  # no complete request head since the last response (or since connecting)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _reject(self, status: int, message: str) -> None:
        body = error_body(status, message)
        head = (f"HTTP/1.1 {status} {'Service Unavailable' if status == 503 else 'Bad Request'}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n")
        self.transport.write(head.encode() + body)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        try:
            event = h11.Response(status_code=400, reason=b"Bad Request",
                                 headers=[(b"content-type", b"application/json"), (b"connection", b"close")])
            self.transport.write(self.conn.send(event))
            body = error_body(400, "malformed HTTP request (request line, headers or framing)")
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            pass
        self.transport.close()


async def send_json(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = error_body(status, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: URL, method, body size and body read time limits; timing for ``on_done``."""

    def __init__(self, app: Any, max_body: int, body_timeout: float,
                 on_done: Callable[[Scope, int, float], None]) -> None:
        self.app, self.max_body, self.body_timeout, self.on_done = app, max_body, body_timeout, on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})["log"] = log = {}
        status = [0]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_URL:
                await send_json(sending, 414, f"request target longer than {MAX_URL} bytes")
            elif scope["method"] not in METHODS:
                await send_json(sending, 501, f"method {scope['method'][:20]} is not implemented; "
                                "use GET or POST")
            elif (n := _content_length(scope)) is not None and n > self.max_body:
                await send_json(sending, 413, f"request body of {n} bytes is over the limit of {self.max_body}")
            else:
                await self.app(scope, self._limited(receive), sending)
        finally:
            log.setdefault("status", status[0])
            self.on_done(scope, status[0], time.perf_counter() - start)

    def _limited(self, receive: Receive) -> Receive:
        seen, done, deadline = [0], [False], [0.0]

        async def limited() -> dict:
            if done[0]:  # the body is read: later calls wait for a disconnect, without a deadline
                return await receive()
            now = time.monotonic()
            deadline[0] = deadline[0] or now + self.body_timeout  # the whole body, from the first read
            try:
                message = await asyncio.wait_for(receive(), max(deadline[0] - now, 0.0))
            except TimeoutError:
                raise HTTPException(408, f"request body not received within {self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise HTTPException(413, f"request body over the limit of {self.max_body} bytes")
                done[0] = not message.get("more_body", False)
            else:
                done[0] = True
            return message

        return limited


def _content_length(scope: Scope) -> int | None:
    for k, v in scope["headers"]:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None
