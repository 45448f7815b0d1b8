"""OpenAI-compatible upstreams of the LLMs a router chooses, and forwarding a chat request to them.

An upstream is a base URL (``http://host:port/v1``); a chat request goes to ``<url>/chat/completions``.
``--upstream NAME=URL`` (repeatable) or a YAML file::

    upstreams:
      gpt-4-1106-preview: https://api.openai.com/v1          # NAME: URL
      claude-v2:
        url: http://127.0.0.1:9001/v1
        model: claude-2.1            # the model name the upstream knows (default: NAME)
        api_key_env: CLAUDE_KEY      # environment variable holding its bearer token (default: none)
        timeout: 30                  # seconds to connect and between bytes read (default: 60)
      "*": http://127.0.0.1:9000/v1  # every LLM without its own entry

``forward`` sends one request and reports a failure (cannot connect, timeout, status 429 or 5xx) as
``UpstreamFailure`` so the caller can try the next LLM; any other status is the upstream's answer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError

DEFAULT_TIMEOUT = 60.0
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                         "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "server", "date"})


@dataclass(frozen=True)
class Upstream:
    name: str  # the router's LLM name, or "*"
    url: str  # base URL; requests go to url + "/chat/completions"
    model: str | None = None  # the name sent upstream (None: the LLM's name)
    api_key_env: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        h = {"content-type": "application/json"}
        if self.api_key_env and (key := os.environ.get(self.api_key_env)):
            h["authorization"] = f"Bearer {key}"
        return h


class UpstreamFailure(Exception):
    """The upstream could not answer (the next LLM in the fallback order is tried)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def _check_url(url: str, where: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - (raises ValueError for a port that is not a number in 0-65535)
    except ValueError as e:
        raise ConfigError(f"{where}: URL {url!r} is malformed ({e}); expected e.g. http://127.0.0.1:9000/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: URL {url!r} must start with http:// or https:// and name a host "
                          "(e.g. http://127.0.0.1:9000/v1)")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: URL {url!r} must not hold a query or fragment (give the base URL, e.g. .../v1)")
    return url


def _entry(name: str, value: Any, where: str) -> Upstream:
    if isinstance(value, str):
        return Upstream(name, _check_url(value, where))
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a URL or a mapping with url (and model, api_key_env, timeout)")
    unknown = sorted(set(value) - {"url", "model", "api_key_env", "timeout"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected url, model, api_key_env, timeout)")
    if not isinstance(value.get("url"), str):
        raise ConfigError(f"{where}: 'url' is required (the upstream's base URL, e.g. http://127.0.0.1:9000/v1)")
    for k in ("model", "api_key_env"):
        if value.get(k) is not None and (not isinstance(value[k], str) or not value[k].strip()):
            raise ConfigError(f"{where}: {k!r} must be a non-empty string")
    t = value.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise ConfigError(f"{where}: 'timeout' {t!r}: expected a positive number of seconds")
    return Upstream(name, _check_url(value["url"], where), value.get("model"), value.get("api_key_env"), float(t))


def parse_upstreams(specs: list[str] | None = None, file: str | Path | None = None) -> dict[str, Upstream]:
    """LLM name (or "*") -> Upstream from ``--upstream NAME=URL`` options and an optional YAML file
    (the options win over the file for the same name)."""
    out: dict[str, Upstream] = {}
    if file is not None:
        from ..io import load_yaml

        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"--upstreams {path}: file not found (expected a YAML file with 'upstreams:')")
        doc = load_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("upstreams"), dict) or set(doc) - {"upstreams"}:
            raise ConfigError(f"{path}: expected a mapping with one key 'upstreams' (LLM name -> URL or mapping)")
        for name, value in doc["upstreams"].items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{path}: upstreams: every key must be an LLM name (or \"*\")")
            out[name.strip()] = _entry(name.strip(), value, f"{path}: upstreams.{name}")
    for spec in specs or []:
        name, sep, url = spec.rpartition("=")
        if not sep or not name.strip() or not url.strip():
            raise ConfigError(f"--upstream {spec!r}: expected NAME=URL (NAME an LLM of the router or *)")
        out[name.strip()] = _entry(name.strip(), url.strip(), f"--upstream {spec}")
    return out


def check_upstreams(upstreams: dict[str, Upstream], models: list[str]) -> None:
    """Every named upstream is an LLM of the router."""
    unknown = [n for n in upstreams if n != "*" and n not in models]
    if unknown:
        raise ConfigError(f"upstream for {unknown[0]!r}, which is not an LLM of this router "
                          f"(it has {', '.join(models)})")


def upstream_for(upstreams: dict[str, Upstream], model: str) -> Upstream | None:
    return upstreams.get(model) or upstreams.get("*")


async def forward(client: Any, up: Upstream, model: str, body: dict, stream: bool) -> Any:
    """Send the chat request for ``model`` to its upstream; an ``httpx.Response`` (open when streaming; the
    caller closes it) whose status is not a retry status, else ``UpstreamFailure``."""
    import httpx

    payload = {**body, "model": up.model or model}
    req = client.build_request("POST", up.endpoint, json=payload, headers=up.headers(),
                               timeout=httpx.Timeout(up.timeout, connect=min(up.timeout, 10.0)))
    try:
        resp = await client.send(req, stream=stream)
    except httpx.TimeoutException as e:
        raise UpstreamFailure("timeout", f"{up.endpoint}: no answer within {up.timeout:g} s") from e
    except httpx.HTTPError as e:
        raise UpstreamFailure("connect", f"{up.endpoint}: {type(e).__name__}") from e
    if resp.status_code in RETRY_STATUS:
        await resp.aclose()
        raise UpstreamFailure("status", f"{up.endpoint}: HTTP {resp.status_code}")
    return resp


def passthrough_headers(resp: Any) -> dict[str, str]:
    """The upstream response's end-to-end headers."""
    return {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
