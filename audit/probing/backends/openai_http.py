"""OpenAI-compatible chat endpoint backend (httpx): timeouts, retries with exponential backoff on 429, 5xx
and connection errors, a bounded request budget, and every failure recorded as a probe error.

The API key is read from the environment variable the user names and lives only in request headers:
it is never returned by `describe()`, never logged, never written to a record.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from audit.errors import InputError
from audit.probing.backends.base import Generation, Messages

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def chat_url(endpoint: str) -> str:
    """`http://host/v1` -> `http://host/v1/chat/completions` (a full .../chat/completions URL is kept)."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def public_url(url: str) -> str:
    """The URL without credentials or query string (either could carry a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server, one request per (conversation, sample)."""

    def __init__(self, endpoint: str, model: str, api_key_env: str | None = None, timeout: float = 60.0,
                 max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 max_requests: int = 2000, concurrency: int = 4, transport: httpx.BaseTransport | None = None,
                 ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--endpoint {public_url(endpoint)!r} is not an http(s) URL")
        headers = {"Content-Type": "application/json"}
        self.api_key_env = api_key_env
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise InputError(f"environment variable {api_key_env} (--api-key-env) is not set or empty")
            headers["Authorization"] = f"Bearer {key}"
        self.url = chat_url(endpoint)
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_requests = max_requests
        self.concurrency = max(1, concurrency)
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                   transport=transport, follow_redirects=False)
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0

    # ------------------------------------------------------------ public

    def check(self) -> None:
        """Fail fast (InputError, exit 2) when nothing answers at the endpoint's host and port."""
        base = self.url.rsplit("/chat/completions", 1)[0]
        try:
            self.client.get(f"{base}/models", timeout=min(self.timeout, 10.0))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            raise InputError(f"cannot reach endpoint {public_url(self.url)}: {_reason(exc)}") from None
        except httpx.HTTPError:
            pass  # something answered: a slow or odd /models is not our concern

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int,
                 n: int) -> list[list[Generation]]:
        jobs = [(i, j) for i in range(len(batch)) for j in range(n)]
        out: list[list[Generation]] = [[Generation() for _ in range(n)] for _ in batch]

        def one(job: tuple[int, int]) -> None:
            i, j = job
            out[i][j] = self._complete(list(batch[i]), max_new_tokens, temperature, seed + j)

        if self.concurrency == 1:
            for job in jobs:
                one(job)
        else:
            with ThreadPoolExecutor(self.concurrency) as pool:
                list(pool.map(one, jobs))
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai-http", "model": self.model, "endpoint": public_url(self.url), "device": "remote",
                "dtype": None, "api_key_env": self.api_key_env, "authenticated": bool(self.api_key_env),
                "timeout_s": self.timeout, "max_retries": self.max_retries, "max_requests": self.max_requests,
                "requests": self.requests, "retries": self.retries}

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------ one request, with retries

    def _take_budget(self) -> bool:
        with self._lock:
            if self.requests >= self.max_requests:
                return False
            self.requests += 1
            return True

    def _complete(self, messages: Messages, max_new_tokens: int, temperature: float, seed: int) -> Generation:
        body = {"model": self.model, "messages": messages, "max_tokens": max_new_tokens,
                "temperature": temperature, "seed": seed, "n": 1}
        last = "no request made"
        for attempt in range(self.max_retries + 1):
            if not self._take_budget():
                return Generation(error=f"request budget exhausted ({self.max_requests} requests); {last}")
            if attempt:
                with self._lock:
                    self.retries += 1
            delay = None
            try:
                resp = self.client.post(self.url, json=body)
            except httpx.TimeoutException as exc:
                last = f"timeout after {self.timeout:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"connection error: {_reason(exc)}"
            else:
                if resp.status_code in RETRY_STATUS:
                    last = f"HTTP {resp.status_code}: {_snippet(resp.text)}"
                    delay = _retry_after(resp)
                elif resp.status_code >= 400:
                    return Generation(error=f"HTTP {resp.status_code}: {_snippet(resp.text)}")
                else:
                    return _parse(resp)
            if attempt < self.max_retries:
                wait = self.backoff * (2 ** attempt)
                time.sleep(min(self.max_backoff, max(wait, delay or 0.0)))
        return Generation(error=f"gave up after {self.max_retries + 1} attempts: {last}")


def _parse(resp: httpx.Response) -> Generation:
    """A Generation from a 200 response; malformed JSON or a missing/empty message is an error."""
    try:
        data = resp.json()
    except ValueError:
        return Generation(error=f"malformed JSON from endpoint (HTTP {resp.status_code}): {_snippet(resp.text)}")
    try:
        message = data["choices"][0]["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return Generation(error=f"response has no choices[0].message: {_snippet(resp.text)}")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    gen = Generation(content if isinstance(content, str) else "", _int(usage.get("prompt_tokens")),
                     _int(usage.get("completion_tokens")))
    if not gen.text.strip():
        gen.error = "empty response"
    return gen


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def create(endpoint: str, model: str, check: bool = True, **options: Any) -> OpenAIBackend:
    backend = OpenAIBackend(endpoint, model, **options)
    if check:
        try:
            backend.check()
        except InputError:
            backend.close()
            raise
    return backend
