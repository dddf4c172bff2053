"""A small OpenAI-compatible server for tests: scripted answers, real tokenizer counts, injectable faults.

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1 (port chosen by the OS) from a
thread; it never connects anywhere itself.

    with OpenAITestServer(answer="I am Qwen.", tokenizer=tok, chat_template=template) as srv:
        post(srv.url + "/chat/completions", ...)   # srv.url is "http://127.0.0.1:PORT/v1"

``usage.prompt_tokens`` is the token count of the chat-templated prompt (the template rendered with
``add_generation_prompt=True``, then encoded without adding special tokens, as vLLM and llama.cpp's server do),
so a client sees the template overhead a real endpoint bills. Without a tokenizer, whitespace-separated words
are counted instead.

Faults, consumed one per request in order (``faults=[...]`` or ``add_faults(...)``), then normal answers:
``"429"`` / ``"500"`` / ``"502"`` / ``"503"`` (an OpenAI error object; 429 with ``Retry-After: 0``),
``"slow"`` (answer after ``slow_s`` seconds), ``"malformed"`` (truncated JSON with status 200), ``"empty"``
(empty message content), ``"no-usage"`` (no ``usage`` field), ``"drop"`` (close the connection unanswered).
Standing knobs: ``usage=False`` (never report usage), ``delay`` (seconds before every answer),
``api_key`` (require ``Authorization: Bearer <key>``), ``max_requests`` (then 503 for good).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Messages = list[dict[str, Any]]
Answer = str | Mapping[str, str] | Callable[[Messages, dict[str, Any]], str]
FAULTS = ("429", "500", "502", "503", "slow", "malformed", "empty", "no-usage", "drop")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
MAX_BODY = 1 << 20


def render_chat(template: str, messages: Messages, add_generation_prompt: bool = True, **extra: Any) -> str:
    """Render a Hugging Face-style Jinja chat template (sandboxed, trim_blocks and lstrip_blocks as HF does)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            **{"bos_token": "", "eos_token": "", **extra})


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """Ids of `text` without added special tokens, for a `tokenizers.Tokenizer` or a transformers tokenizer."""
    enc = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(enc, "ids", enc))


class OpenAITestServer:
    """The server (see the module docstring). Use as a context manager, or call start() and stop()."""

    def __init__(self, answer: Answer = "OK", *, model: str = "test-model", tokenizer: Any = None,
                 chat_template: str | Callable[[Messages], str] | None = None, usage: bool = True,
                 delay: float = 0.0, slow_s: float = 2.0, faults: Iterable[str] = (), api_key: str | None = None,
                 max_requests: int = 10_000) -> None:
        self.answer = answer
        self.model = model
        self.tokenizer = tokenizer
        self.chat_template = chat_template if chat_template is not None else CHATML
        self.usage = usage
        self.delay = delay
        self.slow_s = slow_s
        self.api_key = api_key
        self.max_requests = max_requests
        self.requests: list[dict[str, Any]] = []  # every request: path, parsed body, fault applied
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_faults(*faults)

    # ---- lifecycle

    @property
    def url(self) -> str:
        """Base URL of the API, ``http://127.0.0.1:PORT/v1``."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> OpenAITestServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers, close the socket; returns within a few seconds."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- behaviour

    def add_faults(self, *faults: str) -> None:
        """Queue faults for the next requests, one each (see FAULTS)."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend(faults)

    def count(self, text: str) -> int:
        """Tokens in `text` by the server's tokenizer (words without one)."""
        return len(token_ids(self.tokenizer, text)) if self.tokenizer is not None else len(text.split())

    def prompt(self, messages: Messages) -> str:
        """The chat-templated prompt the server counts."""
        if callable(self.chat_template):
            return self.chat_template(messages)
        return render_chat(self.chat_template, messages)

    def reply(self, messages: Messages, body: dict[str, Any]) -> str:
        """The scripted answer: a string, the first rule whose regex matches the last user message, or a callable."""
        if callable(self.answer):
            return self.answer(messages, body)
        if isinstance(self.answer, str):
            return self.answer
        last = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
        for pattern, text in self.answer.items():
            if pattern != "*" and re.search(pattern, last, flags=re.IGNORECASE):
                return text
        return self.answer.get("*", "OK")

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def completion(self, body: dict[str, Any], fault: str | None) -> dict[str, Any]:
        """The response object for a valid request body."""
        messages = body["messages"]
        text = "" if fault == "empty" else self.reply(messages, body)
        finish = "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        completion_tokens = self.count(text)
        if isinstance(max_tokens, int) and max_tokens >= 0 and completion_tokens > max_tokens:
            if self.tokenizer is not None and hasattr(self.tokenizer, "decode"):
                text = self.tokenizer.decode(token_ids(self.tokenizer, text)[:max_tokens])
            else:
                text = " ".join(text.split()[:max_tokens])
            completion_tokens, finish = max_tokens, "length"
        with self._lock:
            n = len(self.requests)
        out: dict[str, Any] = {
            "id": f"chatcmpl-test-{n}", "object": "chat.completion", "created": 0, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        }
        if self.usage and fault != "no-usage":
            prompt_tokens = self.count(self.prompt(messages))
            out["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens}
        return out


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAITestServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stalled client cannot hold a handler thread for long

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        pass

    def _send(self, status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = self.owner.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._send(401, _error("Incorrect API key provided.", "invalid_request_error", 401))
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") != "/v1/models":
            self._send(404, _error(f"no route {self.path}", "invalid_request_error", 404))
            return
        if self._authorized():
            self._send(200, {"object": "list", "data": [
                {"id": self.owner.model, "object": "model", "created": 0, "owned_by": "provaudit-tests"}]})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        srv = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._send(413, _error("request body too large", "invalid_request_error", 413))
            return
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, _error(f"no route {self.path}", "invalid_request_error", 404))
            return
        if not self._authorized():
            return
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        with srv._lock:
            over = len(srv.requests) >= srv.max_requests
        fault = None if over else srv._next_fault()
        with srv._lock:
            srv.requests.append({"path": self.path, "body": body, "fault": fault})
        if over:
            self._send(503, _error("request budget of the test server spent", "server_error", 503))
            return
        if srv.delay:
            srv._sleep(srv.delay)
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "slow":
            srv._sleep(srv.slow_s)
        if fault in ("429", "500", "502", "503"):
            headers = [("Retry-After", "0")] if fault == "429" else []
            kind = "rate_limit_error" if fault == "429" else "server_error"
            self._send(int(fault), _error(f"scripted {fault}", kind, int(fault)), headers)
            return
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            self._send(400, _error("'messages' must be a non-empty list of {role, content} objects",
                                   "invalid_request_error", 400))
            return
        if body.get("stream"):
            self._send(400, _error("streaming is not supported by the test server", "invalid_request_error", 400))
            return
        payload = json.dumps(srv.completion(body, fault), ensure_ascii=False).encode("utf-8")
        if fault == "malformed":
            payload = payload[: max(1, len(payload) // 2)]
        self._send(200, payload)
