"""The OpenAI-compatible backend against a scripted http.server on 127.0.0.1 started by the test."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audit.errors import InputError
from audit.probing.backends.openai_http import OpenAIBackend, chat_url, create, public_url
from audit.probing.runner import ProbeSettings, run_probes
from audit.probing.suite import resolve_suite

SECRET = "sk-test-DO-NOT-LEAK-0123456789"
MSG = [{"role": "user", "content": "Who are you?"}]


class Scripted(BaseHTTPRequestHandler):
    """Behaviour chosen by the requested model name; per-model request counts in server.calls."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: str | bytes, headers: dict | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted"}]}))

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        model = body["model"]
        with server.lock:
            server.calls[model] += 1
            n = server.calls[model]
            server.bodies.append(body)
            server.auth.append(self.headers.get("Authorization"))
        if model == "retry" and n == 1:
            return self._send(429, '{"error": "slow down"}', {"Retry-After": "0"})
        if model == "flaky" and n <= 2:
            return self._send(503, "upstream down")
        if model == "down":
            return self._send(502, "bad gateway")
        if model == "slow":
            time.sleep(1.0)
        if model == "badjson":
            return self._send(200, "{not json")
        if model == "nochoices":
            return self._send(200, json.dumps({"object": "chat.completion"}))
        if model == "forbidden":
            return self._send(403, '{"error": "no access"}')
        content = {"empty": "", "liar": "I am ChatGPT, a large language model trained by OpenAI.",
                   "liar-zh": "我是ChatGPT，由OpenAI开发。"}.get(model, f"ok seed={body.get('seed')}")
        if model == "liar" and any("你" in m["content"] or "我" in m["content"] for m in body["messages"]):
            content = "我是ChatGPT，由OpenAI开发。"
        self._send(200, json.dumps({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}))


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    srv.daemon_threads = True
    srv.calls = defaultdict(int)
    srv.bodies = []
    srv.auth = []
    srv.lock = threading.Lock()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def backend(srv, model: str, **kw) -> OpenAIBackend:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("concurrency", 1)
    return create(url(srv), model, **kw)


def test_ok_returns_text_and_usage(server) -> None:
    out = backend(server, "plain").generate([MSG, MSG], 16, 0.7, 5, 2)
    assert [[g.text for g in row] for row in out] == [["ok seed=5", "ok seed=6"]] * 2
    assert out[0][0].prompt_tokens == 11 and out[0][0].completion_tokens == 7
    body = server.bodies[0]
    assert body["max_tokens"] == 16 and body["temperature"] == 0.7 and body["messages"] == MSG


def test_retry_after_429(server) -> None:
    b = backend(server, "retry")
    [[gen]] = b.generate([MSG], 8, 0.7, 0, 1)
    assert gen.ok and gen.text == "ok seed=0"
    assert server.calls["retry"] == 2 and b.describe()["retries"] == 1 and b.describe()["requests"] == 2


def test_retries_on_5xx_then_succeeds(server) -> None:
    [[gen]] = backend(server, "flaky").generate([MSG], 8, 0.7, 0, 1)
    assert gen.ok and server.calls["flaky"] == 3


def test_gives_up_after_retries(server) -> None:
    [[gen]] = backend(server, "down", max_retries=2).generate([MSG], 8, 0.7, 0, 1)
    assert gen.error.startswith("gave up after 3 attempts: HTTP 502") and server.calls["down"] == 3


def test_timeout_is_a_probe_error(server) -> None:
    t0 = time.perf_counter()
    [[gen]] = backend(server, "slow", timeout=0.2, max_retries=1).generate([MSG], 8, 0.7, 0, 1)
    assert "timeout after 0.2 s" in gen.error and "2 attempts" in gen.error
    assert time.perf_counter() - t0 < 1.5


@pytest.mark.parametrize("model, message", [
    ("badjson", "malformed JSON from endpoint"),
    ("nochoices", "no choices[0].message"),
    ("empty", "empty response"),
    ("forbidden", "HTTP 403"),
])
def test_bad_answers_are_probe_errors(server, model: str, message: str) -> None:
    [[gen]] = backend(server, model).generate([MSG], 8, 0.7, 0, 1)
    assert message in gen.error and gen.text == ""
    assert server.calls[model] == 1  # not retried


def test_request_budget_is_bounded(server) -> None:
    b = backend(server, "down", max_requests=4, max_retries=3)
    out = b.generate([MSG, MSG, MSG], 8, 0.7, 0, 1)
    assert server.calls["down"] == 4
    assert "request budget exhausted (4 requests)" in out[1][0].error
    assert "request budget exhausted" in out[2][0].error


def test_concurrent_requests(server) -> None:
    out = backend(server, "plain", concurrency=4).generate([MSG] * 3, 8, 0.7, 0, 3)
    assert [[g.text for g in row] for row in out] == [["ok seed=0", "ok seed=1", "ok seed=2"]] * 3


def test_api_key_goes_in_the_header_only(server, monkeypatch) -> None:
    monkeypatch.setenv("PROVAUDIT_TEST_KEY", SECRET)
    b = backend(server, "liar", api_key_env="PROVAUDIT_TEST_KEY")
    result = run_probes(b, [resolve_suite("self-identity")], ProbeSettings(samples=1))
    assert set(server.auth) == {f"Bearer {SECRET}"}
    text = json.dumps(result)
    assert SECRET not in text
    assert result["probe_run"]["backend"]["api_key_env"] == "PROVAUDIT_TEST_KEY"
    assert [f["evidence"]["vendor"] for f in result["flags"]] == ["openai"]


def test_missing_key_variable_is_input_error(server, monkeypatch) -> None:
    monkeypatch.delenv("PROVAUDIT_NO_SUCH_KEY", raising=False)
    with pytest.raises(InputError, match="PROVAUDIT_NO_SUCH_KEY"):
        backend(server, "plain", api_key_env="PROVAUDIT_NO_SUCH_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_input_error() -> None:
    with pytest.raises(InputError, match="cannot reach endpoint"):
        create(f"http://127.0.0.1:{free_port()}/v1", "x", timeout=2)


def test_urls() -> None:
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
    assert public_url("https://user:pw@h:8443/v1?key=abc") == "https://h:8443/v1"
    with pytest.raises(InputError, match="not an http"):
        OpenAIBackend("ftp://h/v1", "x")


# ---------------------------------------------------------------- through the CLI


def test_cli_endpoint_that_lies(server, run_cli, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PROVAUDIT_TEST_KEY", SECRET)
    out = tmp_path / "r.json"
    html = tmp_path / "r.html"
    res = run_cli("probe", "--endpoint", url(server), "--model", "liar", "--api-key-env", "PROVAUDIT_TEST_KEY",
                  "--samples", "2", "--json", out, "--html", html, "-q")
    assert res.code == 0, res.err
    text = out.read_text(encoding="utf-8")
    assert SECRET not in text and SECRET not in html.read_text(encoding="utf-8")
    record = json.loads(text)
    assert record["subject"]["format"] == "openai-endpoint" and record["subject"]["name"] == "liar"
    assert record["probe_run"]["backend"]["endpoint"] == url(server) + "/chat/completions"
    assert [f["evidence"]["vendor"] for f in record["flags"]] == ["openai"]
    responses = record["probes"][0]["responses"]
    assert all(r["prompt_tokens"] == 11 and r["completion_tokens"] == 7 for r in responses)


def test_cli_errors_recorded_not_fatal(server, run_cli) -> None:
    res = run_cli("probe", "--endpoint", url(server), "--model", "badjson", "--suite", "self-identity",
                  "--samples", "1", "--json", "-", "-q")
    assert res.code == 0, res.err
    block = res.record()["probes"][0]
    assert block["answered"] == 0 and all("malformed JSON" in e["error"] for e in block["errors"])


def test_cli_unreachable_endpoint_exits_2(run_cli) -> None:
    res = run_cli("probe", "--endpoint", f"http://127.0.0.1:{free_port()}/v1", "--model", "x", "--timeout", "2")
    assert res.code == 2
    assert res.err.count("\n") == 1 and "cannot reach endpoint" in res.err
