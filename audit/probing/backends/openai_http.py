"""OpenAI-compatible chat endpoint backend (httpx): timeouts, retries with exponential backoff on 429, 5xx
and connection errors, a bounded request budget, and every failure recorded as a probe error.

The API key is read from the environment variable the user names and lives only in request headers:
it is never returned by `describe()`, never logged, never written to a record, never part of a cache key.

Optional on-disk response cache (`cache_dir`): a successful response is stored under the SHA-256 of
{endpoint URL without credentials or query, request body}; the same request later is answered from disk
and costs no request (`cached` counts them). Per-token logprobs are requested with `logprobs=K` (top K
alternatives) and come back on `EndpointGeneration`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from audit.errors import InputError
from audit.probing.backends.base import Generation, Messages
from audit.safeio import write_text_atomic

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class EndpointGeneration(Generation):
    """A Generation with what an endpoint may add: per-token logprobs and whether it came from the cache."""

    tokens: list[str] | None = None
    logprobs: list[float] | None = None
    top_logprobs: list[dict[str, float]] | None = None
    cached: bool = False


def default_cache_dir() -> Path:
    """$PROVAUDIT_CACHE/responses, or ~/.cache/provaudit/responses."""
    root = os.environ.get("PROVAUDIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "provaudit") / "responses"


def cache_key(url: str, body: dict[str, Any]) -> str:
    """SHA-256 of the public URL (no credentials, no query) and the request body: never the API key."""
    blob = json.dumps({"url": public_url(url), "body": body}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
                 cache_dir: str | Path | None = None) -> None:
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
        self.cached = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

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
                 n: int, *, logprobs: int | None = None, top_p: float | None = None) -> list[list[Generation]]:
        """n answers per conversation (sample j: seed+j). `logprobs`: ask for per-token logprobs with that many
        alternatives (0: the chosen token's only); `top_p`: sent when given."""
        jobs = [(i, j) for i in range(len(batch)) for j in range(n)]
        out: list[list[Generation]] = [[Generation() for _ in range(n)] for _ in batch]

        def one(job: tuple[int, int]) -> None:
            i, j = job
            out[i][j] = self._complete(list(batch[i]), max_new_tokens, temperature, seed + j, logprobs, top_p)

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
                "requests": self.requests, "retries": self.retries, "cached": self.cached,
                "cache": self.cache_dir is not None}

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------ one request, with retries

    def _take_budget(self) -> bool:
        with self._lock:
            if self.requests >= self.max_requests:
                return False
            self.requests += 1
            return True

    def _cache_path(self, body: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = cache_key(self.url, body)
        return self.cache_dir / key[:2] / f"{key}.json"

    def _from_cache(self, path: Path | None) -> EndpointGeneration | None:
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # a damaged entry is re-fetched and overwritten
        gen = _parse_data(data)
        if gen.error:
            return None
        gen.cached = True
        with self._lock:
            self.cached += 1
        return gen

    def _store(self, path: Path | None, resp: httpx.Response) -> None:
        if path is None:
            return
        try:
            write_text_atomic(path, resp.text)
        except OSError:
            pass  # a cache that cannot be written costs requests on a rerun, nothing else

    def _count(self, gen: Generation) -> None:
        with self._lock:
            self.prompt_tokens += gen.prompt_tokens or 0
            self.completion_tokens += gen.completion_tokens or 0

    def _complete(self, messages: Messages, max_new_tokens: int, temperature: float, seed: int,
                  logprobs: int | None = None, top_p: float | None = None) -> Generation:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_new_tokens,
                                "temperature": temperature, "seed": seed, "n": 1}
        if top_p is not None:
            body["top_p"] = top_p
        if logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = max(0, int(logprobs))
        where = self._cache_path(body)
        hit = self._from_cache(where)
        if hit is not None:
            return hit
        last = "no request made"
        for attempt in range(self.max_retries + 1):
            if not self._take_budget():
                return EndpointGeneration(error=f"request budget exhausted ({self.max_requests} requests); {last}")
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
                    gen = _parse(resp)
                    self._count(gen)
                    if gen.ok:
                        self._store(where, resp)
                    return gen
            if attempt < self.max_retries:
                wait = self.backoff * (2 ** attempt)
                time.sleep(min(self.max_backoff, max(wait, delay or 0.0)))
        return Generation(error=f"gave up after {self.max_retries + 1} attempts: {last}")


def _parse(resp: httpx.Response) -> EndpointGeneration:
    """A Generation from a 200 response; malformed JSON or a missing/empty message is an error."""
    try:
        data = resp.json()
    except ValueError:
        return EndpointGeneration(
            error=f"malformed JSON from endpoint (HTTP {resp.status_code}): {_snippet(resp.text)}")
    return _parse_data(data, resp.text)


def _parse_data(data: Any, raw: str = "") -> EndpointGeneration:
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return EndpointGeneration(error=f"response has no choices[0].message: {_snippet(raw or str(data))}")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    gen = EndpointGeneration(content if isinstance(content, str) else "", _int(usage.get("prompt_tokens")),
                             _int(usage.get("completion_tokens")))
    _parse_logprobs(choice, gen)
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    gen.finish_reason = finish[:32] if isinstance(finish, str) else None
    if not gen.text.strip():
        gen.error = "empty response"
    return gen


def _parse_logprobs(choice: Any, gen: EndpointGeneration) -> None:
    """choices[0].logprobs.content[*] {token, logprob, top_logprobs} -> gen.tokens/logprobs/top_logprobs."""
    lp = choice.get("logprobs") if isinstance(choice, dict) else None
    items = lp.get("content") if isinstance(lp, dict) else None
    if not isinstance(items, list) or not items:
        return
    tokens, values, tops = [], [], []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            return
        value = item.get("logprob")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        tokens.append(item["token"])
        values.append(float(value))
        top = item.get("top_logprobs")
        tops.append({str(t["token"]): float(t["logprob"]) for t in top
                     if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))}
                    if isinstance(top, list) else {})
    gen.tokens, gen.logprobs, gen.top_logprobs = tokens, values, tops


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
