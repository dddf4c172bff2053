"""The local OpenAI-compatible test server itself: routes, scripted answers, token counts, faults, shutdown."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.openai_server import CHATML, OpenAITestServer, render_chat

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, body: Any = None, *, timeout: float = 5.0, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    """(status, body bytes, headers) of a GET (body None) or POST to `url`."""
    data = raw if raw is not None else (json.dumps(body).encode("utf-8") if body is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def chat(srv: OpenAITestServer, content: str = "Who are you?", **extra: Any) -> tuple[int, bytes, dict[str, str]]:
    body = {"model": srv.model, "messages": [{"role": "user", "content": content}], **extra}
    return call(srv.url + "/chat/completions", body)


def test_models_and_scripted_rules():
    rules = {r"who are you|你是谁": "I am Qwen, made by Alibaba Cloud.", "*": "Sure."}
    with OpenAITestServer(rules, model="qwen-max") as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        status, body, _ = call(srv.url + "/models")
        assert status == 200 and json.loads(body)["data"][0]["id"] == "qwen-max"
        status, body, _ = chat(srv, "你是谁？")
        data = json.loads(body)
        assert status == 200 and data["choices"][0]["message"]["content"].startswith("I am Qwen")
        assert data["choices"][0]["finish_reason"] == "stop"
        assert json.loads(chat(srv, "Tell me a joke")[1])["choices"][0]["message"]["content"] == "Sure."
        assert call(srv.url + "/nothing")[0] == 404
        assert len(srv.requests) == 2  # GETs and 404s are not chat requests


def test_usage_counts_the_templated_prompt_without_a_tokenizer():
    with OpenAITestServer(lambda messages, body: "one two three") as srv:
        data = json.loads(chat(srv, "a b c d")[1])
    prompt = render_chat(CHATML, [{"role": "user", "content": "a b c d"}])
    assert data["usage"] == {"prompt_tokens": len(prompt.split()), "completion_tokens": 3,
                             "total_tokens": len(prompt.split()) + 3}


def test_max_tokens_truncates_the_answer():
    with OpenAITestServer("one two three four") as srv:
        data = json.loads(chat(srv, max_tokens=1)[1])
    assert data["choices"][0]["message"]["content"] == "one"
    assert data["choices"][0]["finish_reason"] == "length" and data["usage"]["completion_tokens"] == 1


def test_faults_are_served_once_each_in_order():
    with OpenAITestServer("fine", faults=["429", "503", "malformed", "empty", "no-usage"]) as srv:
        status, body, headers = chat(srv)
        assert status == 429 and headers.get("Retry-After") == "0"
        assert json.loads(body)["error"]["type"] == "rate_limit_error"
        assert chat(srv)[0] == 503
        status, body, _ = chat(srv)
        assert status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        empty = json.loads(chat(srv)[1])
        assert empty["choices"][0]["message"]["content"] == "" and "usage" in empty
        assert "usage" not in json.loads(chat(srv)[1])
        normal = json.loads(chat(srv)[1])
        assert normal["choices"][0]["message"]["content"] == "fine" and "usage" in normal
        assert [r["fault"] for r in srv.requests] == ["429", "503", "malformed", "empty", "no-usage", None]
    with pytest.raises(ValueError, match="unknown fault"):
        OpenAITestServer(faults=["teapot"])


def test_no_usage_knob_and_api_key():
    with OpenAITestServer("x", usage=False, api_key="sk-test") as srv:
        assert chat(srv)[0] == 401
        status, body, _ = call(srv.url + "/chat/completions", {"messages": [{"role": "user", "content": "hi"}]},
                               headers={"Authorization": "Bearer sk-test"})
        assert status == 200 and "usage" not in json.loads(body)


def test_bad_requests_get_400():
    with OpenAITestServer() as srv:
        assert call(srv.url + "/chat/completions", raw=b"{not json")[0] == 400
        assert call(srv.url + "/chat/completions", {"messages": []})[0] == 400
        assert call(srv.url + "/chat/completions", {"messages": [{"role": "user"}]})[0] == 400
        assert chat(srv, stream=True)[0] == 400


def test_dropped_connection_and_budget():
    with OpenAITestServer("ok", faults=["drop"], max_requests=2) as srv:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
            chat(srv)
        assert chat(srv)[0] == 200
        assert chat(srv)[0] == 503  # budget spent


def test_slow_answer_times_out_and_stop_does_not_hang():
    srv = OpenAITestServer("late", faults=["slow"], slow_s=30).start()
    try:
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            chat_timeout = 0.5
            call(srv.url + "/chat/completions", {"messages": [{"role": "user", "content": "hi"}]},
                 timeout=chat_timeout)
    finally:
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 5
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_delay_knob_delays_every_answer():
    with OpenAITestServer("x", delay=0.2) as srv:
        t0 = time.monotonic()
        assert chat(srv)[0] == 200
        assert time.monotonic() - t0 >= 0.2
