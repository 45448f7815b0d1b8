"""The HTTP server (`unirouter router serve`) end to end on 127.0.0.1: a real uvicorn server on a free port,
real clients, and real fake OpenAI-compatible upstreams (standard-library HTTP servers on loopback)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.data.registry import BUNDLED_DIR
from unirouter_cli.serving.build import build
from unirouter_cli.serving.observe import AccessLog
from unirouter_cli.serving.router import load_router
from unirouter_cli.serving.server import Limits, bind, running
from unirouter_cli.serving.server import build as build_app

from .conftest import invoke

QUESTION = "Solve for x: 3x + 7 = 22. Show the steps of the algebra."


# --------------------------------------------------------------------------------------------
# fixtures: a small built router, fake upstreams, a running server
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A router built on the bundled RouterBench subset (11 LLMs, tfidf, seed 0, K and alpha fixed)."""
    return build("routerbench-subset", seed=0, params={"K": 4, "alpha": 2.0}).save(
        tmp_path_factory.mktemp("server") / "router")


class Upstream:
    """A fake OpenAI-compatible upstream: answers, fails with 503, or stalls; records what it was sent."""

    def __init__(self, name: str, mode: str = "ok") -> None:
        self.name, self.mode, self.seen = name, mode, []
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                up.seen.append({"path": self.path, "body": body})
                if up.mode == "fail":
                    return self._send(503, b'{"error": "overloaded"}')
                if up.mode == "slow":
                    time.sleep(1.5)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for word in ("Hello", " from", f" {up.name}"):
                        chunk = {"object": "chat.completion.chunk", "model": body["model"],
                                 "choices": [{"index": 0, "delta": {"content": word}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.close_connection = True
                    return None
                answer = {"id": "cmpl-1", "object": "chat.completion", "model": body["model"],
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": f"4, says {up.name}"},
                                       "finish_reason": "stop"}]}
                return self._send(200, json.dumps(answer).encode())

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def serving(router_dir: Path, defaults: dict | None = None, upstreams: list[str] | None = None,
            upstream_file: Path | None = None, limits: Limits | None = None, **settings) -> Iterator[str]:
    limits = limits or Limits()
    settings.setdefault("access_log", AccessLog(None))
    _, app = build_app(router_dir, dict(defaults or {"lam": 0.0}), upstreams, upstream_file, limits, **settings)
    sock = bind("127.0.0.1", 0, limits.backlog)
    port = sock.getsockname()[1]
    with running(app, sock, limits):
        yield f"http://127.0.0.1:{port}"


def call(url: str, body: object = None, method: str | None = None, raw: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post(url: str, body: object) -> tuple[int, dict]:
    status, _, data = call(url, body)
    return status, json.loads(data)


def chat(text: str, model: str = "auto", **extra) -> dict:
    return {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": text}], **extra}


# --------------------------------------------------------------------------------------------
# the preview endpoint and the route semantics
# --------------------------------------------------------------------------------------------
def test_route_preview_answers_what_the_router_answers(router_dir):
    r = load_router(router_dir)
    texts = ["What is the capital of France?", QUESTION, "Write a Python function that reverses a list."]
    with serving(router_dir, {"mean_cost": 0.001}) as base:
        status, body = post(f"{base}/route", {"prompts": [{"prompt_id": f"p{i}", "text": t}
                                                          for i, t in enumerate(texts)]})
        assert status == 200
        assert body["routes"] == r.route(texts, ["p0", "p1", "p2"], mean_cost=0.001)
        assert body["routes"][0]["expected_mean_cost"] <= 0.001
        cap = sorted(r.costs)[3]
        status, body = post(f"{base}/route", {"texts": texts, "max_cost": cap})
        assert status == 200 and all(d["cost"] <= cap for d in body["routes"])
        assert [d["model"] for d in body["routes"]] == [d["model"] for d in r.route(texts, max_cost=cap)]
        status, body = post(f"{base}/route", {"texts": texts, "lambda": 0, "pool": ["claude-v1", "claude-v2"]})
        assert status == 200 and {d["model"] for d in body["routes"]} <= {"claude-v1", "claude-v2"}


def test_max_cost_is_a_per_prompt_cap_and_mean_cost_a_reserve_budget(router_dir):
    r = load_router(router_dir)
    texts = pd.read_parquet(BUNDLED_DIR / "routerbench-subset" / "prompts.parquet")["text"].head(80).tolist()
    cheap = sorted(r.costs)
    for cap in cheap[1:4]:
        routes = r.route(texts, max_cost=cap)
        assert all(d["cost"] <= cap for d in routes)
        # the capped choice is the lowest estimated error among the LLMs that fit
        fits = [m for m, c in zip(r.models, r.costs, strict=True) if c <= cap]
        best = r.route(texts, lam=0.0, pool=fits)
        assert [d["model"] for d in routes] == [d["model"] for d in best]
    budget = float(cheap[5])
    routes = r.route(texts, mean_cost=budget)
    assert routes[0]["expected_mean_cost"] <= budget and routes[0]["lambda"] > 0
    with pytest.raises(Exception, match="no LLM costs that little"):
        r.route(texts, max_cost=cheap[0] / 2)


# --------------------------------------------------------------------------------------------
# the OpenAI-compatible endpoint against fake upstreams
# --------------------------------------------------------------------------------------------
def test_chat_auto_routes_the_last_user_message_and_returns_the_upstreams_answer(router_dir):
    r = load_router(router_dir)
    up = Upstream("fake")
    try:
        with serving(router_dir, {"lam": 0.0}, [f"*={up.url}"]) as base:
            status, headers, data = call(f"{base}/v1/chat/completions", chat(QUESTION))
            assert status == 200, data
            want = r.route([QUESTION], lam=0.0)[0]
            assert headers["x-unirouter-model"] == want["model"]
            assert float(headers["x-unirouter-p-correct"]) == pytest.approx(want["p_correct"], rel=1e-5)
            assert float(headers["x-unirouter-cost"]) == pytest.approx(want["cost"], rel=1e-5)
            body = json.loads(data)
            assert body["choices"][0]["message"]["content"] == "4, says fake" and body["model"] == want["model"]
            sent = up.seen[-1]
            assert sent["path"] == "/v1/chat/completions" and sent["body"]["model"] == want["model"]
            assert sent["body"]["messages"][-1]["content"] == QUESTION and "unirouter" not in sent["body"]
            # a named LLM bypasses routing; per-request options apply to "auto"
            status, headers, _ = call(f"{base}/v1/chat/completions", chat(QUESTION, model="claude-v1"))
            assert status == 200 and headers["x-unirouter-model"] == "claude-v1"
            assert headers["x-unirouter-routing"] == "direct" and up.seen[-1]["body"]["model"] == "claude-v1"
            status, headers, _ = call(f"{base}/v1/chat/completions",
                                      {"model": "claude-v2", "messages": [{"role": "system", "content": "Hi."}]})
            assert status == 200 and headers["x-unirouter-model"] == "claude-v2"
            status, _, data = call(f"{base}/v1/chat/completions",
                                   {"model": "auto", "messages": [{"role": "system", "content": "Hi."}]})
            assert status == 400 and "no user message" in json.loads(data)["error"]
            cap = sorted(r.costs)[2]
            status, headers, _ = call(f"{base}/v1/chat/completions", chat(QUESTION, unirouter={"max_cost": cap}))
            assert status == 200 and float(headers["x-unirouter-cost"]) <= cap
            # streaming is passed through chunk by chunk
            status, headers, data = call(f"{base}/v1/chat/completions", chat(QUESTION, stream=True))
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[6:]) for line in data.decode().split("\n\n") if line.startswith("data: {")]
            assert "".join(e["choices"][0]["delta"]["content"] for e in events) == "Hello from fake"
            assert data.decode().rstrip().endswith("data: [DONE]")
    finally:
        up.close()


def test_chat_falls_back_in_ranking_order_when_upstreams_fail_or_time_out(router_dir, tmp_path):
    r = load_router(router_dir)
    ranking = [c["model"] for c in r.route([QUESTION], lam=0.0, ranked=True)[0]["ranking"]]
    down, slow, fine = Upstream("down", "fail"), Upstream("slow", "slow"), Upstream("fine")
    cfg = tmp_path / "upstreams.yaml"
    cfg.write_text(f"upstreams:\n  {ranking[0]}: {down.url}\n  {ranking[1]}:\n    url: {slow.url}\n"
                   f"    timeout: 0.3\n  '*':\n    url: {fine.url}\n    model: served-name\n")
    try:
        with serving(router_dir, {"lam": 0.0}, upstream_file=cfg) as base:
            status, headers, data = call(f"{base}/v1/chat/completions", chat(QUESTION))
            assert status == 200, data
            assert headers["x-unirouter-model"] == ranking[2] and headers["x-unirouter-attempts"] == "3"
            assert headers["x-unirouter-chosen-model"] == ranking[0]
            assert json.loads(data)["choices"][0]["message"]["content"] == "4, says fine"
            assert fine.seen[-1]["body"]["model"] == "served-name" and len(down.seen) == 1
            _, _, text = call(f"{base}/metrics")
            m = text.decode()
            assert f'unirouter_upstream_errors_total{{model="{ranking[0]}",kind="status"}} 1' in m
            assert f'unirouter_upstream_errors_total{{model="{ranking[1]}",kind="timeout"}} 1' in m
            assert "unirouter_fallbacks_total 1" in m
        with serving(router_dir, {"lam": 0.0}, [f"*={down.url}"], max_attempts=2) as base:
            status, _, data = call(f"{base}/v1/chat/completions", chat(QUESTION))
            err = json.loads(data)
            assert status == 502 and "every upstream failed (2 tried)" in err["error"]
    finally:
        for u in (down, slow, fine):
            u.close()


# --------------------------------------------------------------------------------------------
# live reload, logs, metrics
# --------------------------------------------------------------------------------------------
def test_add_llm_on_the_served_directory_shows_in_info_without_restart(router_dir, tmp_path, runner):
    import shutil

    d = Path(shutil.copytree(router_dir, tmp_path / "live"))
    r = load_router(d)
    answers = tmp_path / "answers.csv"  # a table LLM's real answers on 60 probes, under a new name
    probes = r.probes(60, seed=0, answers_of="claude-v2")
    probes[["prompt_id", "score"]].to_csv(answers, index=False)
    with serving(d, {"lam": 0.0}, reload_interval=0.1) as base:
        before = json.loads(call(f"{base}/info")[2])
        stop, statuses = threading.Event(), []

        def hammer() -> None:  # requests during the swap are answered by the old or the new router
            while not stop.is_set():
                statuses.append(call(f"{base}/route", {"texts": [QUESTION]})[0])

        t = threading.Thread(target=hammer)
        t.start()
        try:
            res = invoke(runner, "router", "add-llm", d, "--model", "claude-v2-twin", "--cost", "0.002",
                         "--answers", answers)
            assert res.exit_code == 0, res.output
            deadline, info = time.monotonic() + 4, before
            while "claude-v2-twin" not in [m["name"] for m in info["llms"]] and time.monotonic() < deadline:
                time.sleep(0.05)
                info = json.loads(call(f"{base}/info")[2])
        finally:
            stop.set()
            t.join()
        assert "claude-v2-twin" in [m["name"] for m in info["llms"]]
        assert info["served"]["version"] != before["served"]["version"] and info["served"]["reloads"] == 1
        assert statuses and set(statuses) == {200}
        _, body = post(f"{base}/route", {"texts": [QUESTION], "pool": ["claude-v2-twin"], "lambda": 0})
        assert body["routes"][0]["model"] == "claude-v2-twin" and body["router_version"] == info["served"]["version"]


def test_access_log_is_one_json_line_per_request_without_prompt_text(router_dir):
    stream = io.StringIO()
    with serving(router_dir, {"lam": 0.0}, access_log=AccessLog(stream)) as base:
        post(f"{base}/route", {"texts": [QUESTION]})
        call(f"{base}/route", {"texts": [QUESTION], "lamda": 1})
        call(f"{base}/nowhere")
        metrics = call(f"{base}/metrics")[2].decode()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(d["path"], d["status"]) for d in lines] == [("/route", 200), ("/route", 400), ("/nowhere", 404),
                                                         ("/metrics", 200)]
    assert lines[0]["model"] and lines[0]["p_correct"] > 0 and lines[0]["cost"] > 0 and lines[0]["ms"] > 0
    assert QUESTION not in stream.getvalue() and "unknown key" in lines[1]["error"]
    assert 'unirouter_requests_total{method="POST",path="/route",status="200"} 1' in metrics
    assert 'unirouter_request_seconds_count{path="/route"} 2' in metrics
    assert 'unirouter_choices_total{endpoint="route",model="' in metrics
    stream = io.StringIO()
    with serving(router_dir, {"lam": 0.0}, access_log=AccessLog(stream, prompts=True)) as base:
        post(f"{base}/route", {"texts": [QUESTION]})
    assert QUESTION in stream.getvalue()


# --------------------------------------------------------------------------------------------
# hostile clients
# --------------------------------------------------------------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000
HOSTILE = [
    ({"texts": ["a"], "lambda": int("9" * 401)}, "'lambda': expected a finite number"),
    ({"texts": ["a"], "max_cost": int("9" * 401)}, "'max_cost': expected a finite number"),
    ({"texts": ["a"], "lamda": 1}, "'lamda': unknown key"),
    ({"texts": ["a"], "pool": []}, "'pool'"),
    ({"texts": []}, "'texts'"),
    ({"texts": ["  "]}, "texts[0] is blank"),
    ({"prompts": [{"prompt_id": "a", "text": "x"}, {"prompt_id": "a", "text": "y"}]}, "duplicate"),
    ({"prompts": [{"prompt_id": "a", "txt": "x"}]}, "'prompts[0].txt': unknown key"),
    ({"texts": ["a"], "lambda": 0, "mean_cost": 1}, "at most one of 'lambda', 'mean_cost'"),
    ({"texts": ["a"], "pool": ["gpt-5"]}, "'pool': unknown LLM"),
    ({"texts": ["a"], "max_cost": 1e-9}, "'max_cost' 1e-09: no LLM costs that little"),
    ({"texts": ["a"], "mean_cost": 1e-9}, "'mean_cost' 1e-09 is below the cheapest"),
    ({"texts": ["a"], "lambda": "0"}, "'lambda': expected a finite number"),
    ({"texts": ["a"], "lambda": -1}, "'lambda': input should be greater than or equal to 0"),
    ([1, 2], "expected a JSON object"),
]


def test_hostile_requests_get_one_line_json_errors(router_dir, capfd):
    with serving(router_dir, {"lam": 0.0}, limits=Limits(max_body=1 << 20)) as base:
        for body, msg in HOSTILE:
            status, data = post(f"{base}/route", body)
            assert status == 400 and msg in data["error"] and "\n" not in data["error"], (body, data)
        for raw, msg in ((DEEP, "deeper than"), (b'{"texts": ["a"], "lambda": 1e999}', "finite number"),
                         (b"\xff\xfe", "not UTF-8"), (b"{", "not valid JSON")):
            status, _, data = call(f"{base}/route", raw=raw)
            assert status == 400 and msg in json.loads(data)["error"], data
        for method, path, raw, want in (("GET", "/route", None, 405), ("DELETE", "/info", None, 405),
                                        ("PROPFIND", "/route", None, 501), ("GET", "/nope", None, 404),
                                        ("GET", "/route?" + "x" * 9000, None, 414)):
            status, headers, data = call(f"{base}{path}", method=method, raw=raw)
            assert status == want and json.loads(data)["status"] == want, (method, path, data[:200])
            assert headers["content-type"] == "application/json"
        assert "POST" in call(f"{base}/route", method="GET")[1]["allow"]
        port = int(base.rsplit(":", 1)[1])
        for head in (b"Content-Length: 2097152\r\n\r\n" + b" " * 1000,  # declared over the limit
                     b"Transfer-Encoding: chunked\r\n\r\n" + (b"100000\r\n" + b" " * 0x100000 + b"\r\n") * 2):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /route HTTP/1.1\r\nHost: x\r\n" + head)
                answer = s.recv(4096)
            assert b" 413 " in answer and b'"status":413' in answer, answer
        status, _, data = call(f"{base}/v1/chat/completions", {"model": "auto", "messages": []})
        assert status == 400 and "'messages'" in json.loads(data)["error"]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


def test_concurrent_clients_are_all_answered_and_stalled_ones_dropped(router_dir, capfd):
    with serving(router_dir, {"lam": 0.0}, limits=Limits(body_timeout=0.5)) as base:
        port = int(base.rsplit(":", 1)[1])
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda i: post(f"{base}/route", {"texts": [f"{QUESTION} {i}"]})[0], range(200)))
        assert statuses == [200] * 200
        # a body that trickles in too slowly: 408
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /route HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"texts\"")
            answer = s.recv(4096)
        assert b" 408 " in answer and b'"status":408' in answer, answer
        # clients that go away mid-request or mid-body leave no traceback
        for head in (b"POST /route HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"te",
                     b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(head)
        time.sleep(0.2)
        assert post(f"{base}/route", {"texts": [QUESTION]})[0] == 200
    # stalled clients: each is either refused at once over the connection cap (a JSON 503) or disconnected
    # when its request head has not ended within the head timeout
    with serving(router_dir, {"lam": 0.0}, limits=Limits(header_timeout=1.0, max_connections=20)) as base:
        port = int(base.rsplit(":", 1)[1])
        stalled = []
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            with contextlib.suppress(OSError):  # a refused one may be closed already
                s.sendall(b"POST /route HTTP/1.1\r\nHost: x\r\n")  # a request head that never ends
            stalled.append(s)
        answers = [s.recv(4096) for s in stalled]
        for s in stalled:
            s.close()
        refused = [a for a in answers if a]
        assert len(refused) >= 10 and all(b" 503 " in a and b'"status":503' in a for a in refused), refused
        assert answers.count(b"") >= 10  # the ones within the cap: closed after the head timeout
        assert post(f"{base}/route", {"texts": [QUESTION]})[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err, err


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, msg", [
    (["--port", "99999"], "--port 99999: expected a TCP port"),
    (["--lambda", "-1"], "--lambda -1.0: expected a number >= 0"),
    (["--max-cost", "1e-9"], "--max-cost 1e-09: no LLM costs that little"),
    (["--mean-cost", "1e-9"], "--mean-cost 1e-09 is below the cheapest"),
    (["--min-quality", "2"], "--min-quality 2.0: expected a number in [0, 1]"),
    (["--pool", "gpt-5"], "--pool: unknown LLM"),
    (["--upstream", "no-equals-sign"], "expected NAME=URL"),
    (["--upstream", "gpt-5=http://127.0.0.1:1/v1"], "not an LLM of this router"),
    (["--upstream", "*=ftp://x"], "must start with http"),
    (["--upstream", "*=http://[::1/v1"], "is malformed"),
    (["--upstream", "*=http://127.0.0.1:abc/v1"], "is malformed"),
    (["--upstream", "*=http://127.0.0.1:99999/v1"], "is malformed"),
])
def test_serve_refuses_bad_options_before_listening(router_dir, runner, args, msg):
    res = invoke(runner, "router", "serve", router_dir, *args)
    assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, res.output


def test_tfidf_transform_of_a_few_texts_equals_the_batch_transform(router_dir):
    from unirouter_cli.embed.encoders import FEW_TEXTS

    enc = load_router(router_dir).encoder
    texts = pd.read_parquet(BUNDLED_DIR / "routerbench-subset" / "prompts.parquet")["text"].head(40).tolist()
    texts += ["", "the and of", "Straße naïve café ÄÖÜ", "x" * 5000]
    assert len(texts) > FEW_TEXTS
    one_by_one = np.vstack([enc.transform([t]) for t in texts])
    np.testing.assert_allclose(one_by_one, enc.transform(texts), atol=1e-6)


def test_the_core_import_path_never_imports_the_server_libraries():
    code = ("import sys, unirouter_cli; from unirouter_cli.cli import app; "
            "from unirouter_cli.serving import build, router, routing, store; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'httpx', 'pydantic'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_serve_without_the_extra_names_it(router_dir, runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # an import of it now fails
    res = invoke(runner, "router", "serve", router_dir)
    assert res.exit_code == 2 and "pip install -c constraints.txt -e '.[serve]'" in res.output, res.output


def test_serve_command_reloads_on_sighup(router_dir, tmp_path):
    import shutil

    d = Path(shutil.copytree(router_dir, tmp_path / "hup"))
    cmd = [sys.executable, "-m", "unirouter_cli", "router", "serve", str(d), "--port", "0", "--lambda", "0",
           "--reload-interval", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line
        base = line.split(" on ")[1].split()[0]
        r = load_router(d)
        r.remove_llm(r.models[-1])
        r.save()
        time.sleep(0.3)
        assert len(json.loads(call(f"{base}/info")[2])["llms"]) == len(r.models) + 1  # no polling: unchanged
        os.kill(proc.pid, signal.SIGHUP)
        deadline, n = time.monotonic() + 4, None
        while n != len(r.models) and time.monotonic() < deadline:
            time.sleep(0.05)
            n = len(json.loads(call(f"{base}/info")[2])["llms"])
        assert n == len(r.models)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    tail = proc.stderr.read()
    assert "Traceback" not in tail and '"event":"reload","outcome":"reloaded"' in tail, tail
