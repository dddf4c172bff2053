"""The endpoint side of `provaudit trace`: response cache, logprobs, request budget, bad input (no real model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.probing.backends.openai_http import OpenAIBackend, cache_key
from tests.support.openai_server import OpenAITestServer

SECRET = "sk-trace-DO-NOT-LEAK-42"
MSG = [{"role": "user", "content": "Describe a lighthouse."}]


def _with_logprobs(messages, body) -> str:  # noqa: ANN001 - OpenAITestServer callback
    return "A tall tower."


def test_rerun_is_answered_from_cache_with_zero_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_KEY", SECRET)
    with OpenAITestServer("A tall tower.", api_key=SECRET) as srv:
        first = OpenAIBackend(srv.url, "m", api_key_env="TRACE_KEY", cache_dir=tmp_path, backoff=0.0)
        a = first.generate([MSG, MSG], 8, 0.7, 3, 2)
        assert first.requests == 4 and first.cached == 0
        again = OpenAIBackend(srv.url, "m", api_key_env="TRACE_KEY", cache_dir=tmp_path, backoff=0.0)
        b = again.generate([MSG, MSG], 8, 0.7, 3, 2)
        assert again.requests == 0 and again.cached == 4 and len(srv.requests) == 4
        assert [g.text for row in a for g in row] == [g.text for row in b for g in row]
        other_seed = again.generate([MSG], 8, 0.7, 99, 1)  # another request body is not a cache hit
        assert again.requests == 1 and other_seed[0][0].ok
    stored = "".join(p.read_text(encoding="utf-8") + p.name for p in tmp_path.rglob("*") if p.is_file())
    assert stored and SECRET not in stored and "TRACE_KEY" not in stored


def test_cache_key_ignores_credentials_and_query_but_not_the_body() -> None:
    body = {"model": "m", "messages": MSG}
    assert cache_key("https://user:pw@api.example.com/v1/chat/completions?key=abc", body) == \
        cache_key("https://api.example.com/v1/chat/completions", body)
    assert cache_key("https://api.example.com/v1/chat/completions", {**body, "seed": 1}) != \
        cache_key("https://api.example.com/v1/chat/completions", body)


def test_no_cache_dir_sends_every_time(tmp_path: Path) -> None:
    with OpenAITestServer("ok") as srv:
        backend = OpenAIBackend(srv.url, "m")
        backend.generate([MSG], 4, 0.0, 0, 1)
        backend.generate([MSG], 4, 0.0, 0, 1)
        assert backend.requests == 2 and backend.cached == 0


def test_budget_stops_at_max_requests_and_failures_are_not_cached(tmp_path: Path) -> None:
    with OpenAITestServer("ok", faults=["503"] * 2) as srv:
        backend = OpenAIBackend(srv.url, "m", max_requests=3, backoff=0.0, cache_dir=tmp_path)
        out = backend.generate([MSG, [{"role": "user", "content": "b"}], [{"role": "user", "content": "c"}]],
                               4, 0.0, 0, 1)
        assert backend.requests == 3 and len(srv.requests) == 3  # two 503s retried, then one answer, then stop
        errors = [g.error or "" for row in out for g in row]
        assert sum(e.startswith("request budget exhausted") for e in errors) == 2
        assert sum(g.ok for row in out for g in row) == 1
    assert len([p for p in tmp_path.rglob("*.json")]) == 1


def test_logprobs_are_requested_and_parsed() -> None:
    def answer(messages, body):  # noqa: ANN001, ANN202
        return "Hi there"

    class LogprobServer(OpenAITestServer):
        def completion(self, body, fault):  # noqa: ANN001, ANN201
            out = super().completion(body, fault)
            if body.get("logprobs"):
                out["choices"][0]["logprobs"] = {"content": [
                    {"token": "Hi", "logprob": -0.5, "top_logprobs": [{"token": "Hi", "logprob": -0.5},
                                                                      {"token": "Hello", "logprob": -1.2}]},
                    {"token": " there", "logprob": -0.1, "top_logprobs": []}]}
            return out

    with LogprobServer(answer) as srv:
        backend = OpenAIBackend(srv.url, "m")
        gen = backend.generate([MSG], 4, 0.7, 0, 1, logprobs=2, top_p=0.9)[0][0]
        body = srv.requests[0]["body"]
        assert body["logprobs"] is True and body["top_logprobs"] == 2 and body["top_p"] == 0.9
        assert gen.tokens == ["Hi", " there"] and gen.logprobs == [-0.5, -0.1]
        assert gen.top_logprobs[0] == {"Hi": -0.5, "Hello": -1.2}
        plain = backend.generate([MSG], 4, 0.7, 0, 1)[0][0]
        assert "logprobs" not in srv.requests[1]["body"] and getattr(plain, "logprobs", None) is None


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audit", "trace", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("args", [
    ("--endpoint", "http://127.0.0.1:9/v1", "--model", "m"),  # no reference
    ("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-r", "x=/no/such/model"),
    ("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-r", "x=endpoint:h/v1#m"),  # not NAME=endpoint:URL#MODEL
    ("-r", "x=.", "--model", "m"),  # --model without --endpoint
    ("--endpoint", "http://127.0.0.1:9/v1", "-r", "x=."),  # --endpoint without --model
    ("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-r", "x=.", "--prompts", "0"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    res = _cli(*args)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_dry_run_states_the_budget_and_sends_nothing() -> None:
    with OpenAITestServer("ok") as srv:
        res = _cli("--endpoint", srv.url, "--model", "m", "-r", "x=.", "--prompts", "5", "--samples", "3",
                   "--dry-run")
        assert res.returncode == 0, res.stderr
        assert "30 requests" in res.stdout and "5 prompts x 3 sample(s)" in res.stdout  # 15 + 6 billing + 9 extraction
        assert srv.requests == []
    res = _cli("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-r", "x=.", "--temperature", "0",
               "--prompts", "4", "--no-hidden-prompt", "--dry-run")
    assert "4 requests" in res.stdout


def test_unreachable_endpoint_is_exit_2(tmp_path: Path) -> None:
    res = _cli("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-r", "x=.", "--timeout", "2", "-q",
               "--json", str(tmp_path / "r.json"), env={"PROVAUDIT_CACHE": str(tmp_path / "c")})
    assert res.returncode == 2 and "cannot reach" in res.stderr
    assert not (tmp_path / "r.json").exists()
    assert json.dumps(res.stderr).count("\\n") <= 1


def test_unreachable_endpoint_reference_is_exit_2(tmp_path: Path) -> None:
    with OpenAITestServer("ok") as srv:
        res = _cli("--endpoint", srv.url, "--model", "m", "-r", "x=endpoint:http://127.0.0.1:9/v1#vendor",
                   "--timeout", "2", "-q", "--json", str(tmp_path / "r.json"),
                   env={"PROVAUDIT_CACHE": str(tmp_path / "c")})
        assert srv.requests == []  # nothing is sent to the subject before every endpoint answered the check
    assert res.returncode == 2 and "cannot reach" in res.stderr and "127.0.0.1:9" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.json").exists()
