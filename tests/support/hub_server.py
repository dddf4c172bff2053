"""A small Hugging Face Hub for tests: the API and file routes huggingface_hub calls, serving files from disk.

Runs on 127.0.0.1 (port chosen by the OS) in a thread; it never connects anywhere itself.

    repo = HubRepo({"model.safetensors": path, "config.json": cfg_path})
    with HubTestServer({"org/name": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ...
        hub.served("org/name", "model.safetensors")   # body bytes sent for that file (GET, whole or ranges)

Routes, as the Hub answers them:
  GET  /api/models/{repo}[/revision/{rev}]          {"id", "sha", "siblings", ...}
  GET  /api/models/{repo}/tree/{rev}[/{path}]       [{"type": "file", "path", "size", "oid", "lfs"?}, ...]
  POST /api/models/{repo}/paths-info/{rev}          the same entries for the form field `paths`
  HEAD|GET /{repo}/resolve/{rev}/{path}             the file; `Range: bytes=a-b` -> 206 with Content-Range;
                                                    X-Repo-Commit, ETag; LFS files (.safetensors, .gguf, or
                                                    any file over 10 MB) also X-Linked-Size, X-Linked-Etag
Errors carry the Hub's X-Error-Code: RepoNotFound (404, or 401 for a private repo without its token),
RevisionNotFound (404), EntryNotFound (404, with X-Repo-Commit), GatedRepo (401 without a token, 403 with
another token) on file routes of a gated repo (its API info stays public, as on the Hub).

`redirect_lfs=True` answers LFS resolve requests with a 302 to `http://localhost:PORT/cdn/...` (another origin,
as a CDN is: huggingface_hub does not follow it on HEAD, and the client must not send the token there).

Faults, consumed in order by the weight-file GET requests (resolve or cdn routes; not HEAD):
  "429" / "500" / "503"   that status, no body
  "cut"                   headers for the whole range, half of its body, then the connection is closed
"""

from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing
import re
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")
LFS_MIN = 10 << 20


@dataclass
class HubRepo:
    """A repository: {path in repo: file on disk}, one commit, named branches (main by default)."""

    files: Mapping[str, Path]
    commit: str = ""
    branches: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    private: bool = False
    token: str | None = None  # the token that opens a gated or private repo

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1("\n".join(sorted(self.files)).encode())
            for p in sorted(self.files):
                digest.update(str(Path(self.files[p]).stat().st_size).encode())
            self.commit = digest.hexdigest()
        self.branches = {"main": self.commit, **self.branches}
        self._entries: dict[str, dict[str, Any]] = {}

    def entry(self, path: str) -> dict[str, Any]:
        if path not in self._entries:
            disk = Path(self.files[path])
            size = disk.stat().st_size
            e: dict[str, Any] = {"type": "file", "path": path, "size": size,
                                 "oid": hashlib.sha1(f"blob {size}\0".encode() + disk.read_bytes()).hexdigest()}
            if path.endswith(LFS_SUFFIXES) or size >= LFS_MIN:
                h = hashlib.sha256()
                with disk.open("rb") as fh:
                    while chunk := fh.read(1 << 22):
                        h.update(chunk)
                e["lfs"] = {"oid": h.hexdigest(), "size": size, "pointerSize": 134}
            self._entries[path] = e
        return self._entries[path]


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int
    sent: int  # body bytes written


class _State:
    """What the server knows and counts; lives in the process that serves."""

    def __init__(self, repos: Mapping[str, HubRepo], faults: Iterable[str], redirect_lfs: bool) -> None:
        self.repos = dict(repos)
        self.faults: deque[str] = deque(faults)
        self.redirect_lfs = redirect_lfs
        self.port = 0
        self.log: list[Request] = []
        self.served: dict[tuple[str, str], int] = defaultdict(int)
        self.lock = threading.Lock()

    def note(self, req: Request) -> None:
        with self.lock:
            self.log.append(req)

    def count(self, repo: str, path: str, nbytes: int, req: Request) -> None:
        with self.lock:
            self.served[(repo, path)] += nbytes
            req.sent += nbytes

    def fault(self) -> str | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"served": [[r, p, n] for (r, p), n in self.served.items()], "log": [asdict(r) for r in self.log]}

    def reset(self) -> None:
        with self.lock:
            self.served.clear()
            self.log.clear()


def _make_httpd(state: _State) -> ThreadingHTTPServer:
    class Handler(_Handler):
        hub = state

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    return httpd


def _serve_in_child(repos: Mapping[str, HubRepo], faults: list[str], redirect_lfs: bool, conn: Connection) -> None:
    httpd = _make_httpd(_State(repos, faults, redirect_lfs))
    conn.send(httpd.server_address[1])
    conn.close()
    httpd.serve_forever()


class HubTestServer:
    """The test Hub, served from a child process by default (so that its threads do not compete with the
    client's for one interpreter lock, as a real Hub would not); `in_process=True` serves from a thread."""

    def __init__(self, repos: Mapping[str, HubRepo], faults: Iterable[str] = (), redirect_lfs: bool = False,
                 in_process: bool = False) -> None:
        self._repos, self._faults, self._redirect = dict(repos), list(faults), redirect_lfs
        self._in_process = in_process
        self._state: _State | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._proc: Any = None
        self.port = 0
        self.url = ""

    def __enter__(self) -> HubTestServer:
        if self._in_process:
            self._state = _State(self._repos, self._faults, self._redirect)
            self._httpd = _make_httpd(self._state)
            threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
            self.port = self._state.port
        else:
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve_in_child, args=(self._repos, self._faults, self._redirect, child),
                                     daemon=True)
            self._proc.start()
            if not parent.poll(60):
                self._proc.terminate()
                raise RuntimeError("the test Hub did not start")
            self.port = parent.recv()
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(10)

    def _control(self, what: str, body: Any = None) -> Any:
        if self._state is not None:
            if what == "state":
                return self._state.snapshot()
            if what == "reset":
                return self._state.reset()
            with self._state.lock:
                self._state.faults.extend(body)
            return None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)  # no proxies, whatever the env says
        try:
            data = json.dumps(body).encode() if body is not None else b""
            conn.request("GET" if what == "state" else "POST", f"/_test/{what}", body=data or None)
            return json.loads(conn.getresponse().read() or b"null")
        finally:
            conn.close()

    def add_faults(self, *faults: str) -> None:
        """Faults for the next weight-file GET requests, in order (see the module docstring)."""
        self._control("faults", list(faults))

    def served(self, repo: str, path: str) -> int:
        """Body bytes of `path` sent by GET requests so far (HEAD sends none)."""
        return sum(n for r, p, n in self._control("state")["served"] if (r, p) == (repo, path))

    def reset(self) -> None:
        """Forget the log and the byte counts."""
        self._control("reset")

    @property
    def log(self) -> list[Request]:
        return [Request(**r) for r in self._control("state")["log"]]

    def requests(self, method: str | None = None, contains: str = "") -> list[Request]:
        return [r for r in self.log if (method is None or r.method == method) and contains in r.path]


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/(?P<kind>revision|tree|paths-info)/(?P<rest>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<commit>[0-9a-f]{40})/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: _State
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # ---------------------------------------------------------------- plumbing

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
              content_type: str = "application/json") -> int:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            return len(body)
        return 0

    def _json(self, data: Any, headers: Mapping[str, str] | None = None) -> int:
        return self._send(200, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> int:
        h = {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}
        return self._send(status, json.dumps({"error": message}).encode(), h)

    def _record(self, status: int, sent: int) -> None:
        req = Request(self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization"), status, sent)
        self.hub.note(req)

    def _repo(self, repo_id: str) -> tuple[HubRepo | None, int]:
        """The repo, or (None, status already sent)."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return None, self._error_sent(404, "RepoNotFound", "Repository not found")
        if repo.private and not self._authorized(repo):
            return None, self._error_sent(401, "RepoNotFound", "Repository not found")
        return repo, 0

    def _error_sent(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> int:
        self._error(status, code, message, headers)
        return status

    def _authorized(self, repo: HubRepo) -> bool:
        return repo.token is not None and self.headers.get("Authorization") == f"Bearer {repo.token}"

    def _commit(self, repo: HubRepo, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in repo.branches:
            return repo.branches[rev]
        if rev == repo.commit:
            return rev
        return None

    # ---------------------------------------------------------------- routes

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlparse(self.path)
        if url.path.startswith("/_test/"):  # the test's control routes (state, reset, faults): not logged
            what = url.path[len("/_test/"):]
            if what == "state":
                self._json(self.hub.snapshot())
            elif what == "reset":
                self.hub.reset()
                self._json(None)
            elif what == "faults":
                with self.hub.lock:
                    self.hub.faults.extend(json.loads(getattr(self, "_body", b"") or b"[]"))
                self._json(None)
            return
        if (m := _API.match(url.path)) is not None:
            status = self._api(m.group("repo"), m.group("kind"), m.group("rest") or "", parse_qs(url.query))
            self._record(status, 0)
            return
        if (m := _RESOLVE.match(url.path)) is not None:
            self._resolve(m.group("repo"), m.group("rev"), unquote(m.group("path")))
            return
        if (m := _CDN.match(url.path)) is not None:
            repo = self.hub.repos.get(m.group("repo"))
            path = unquote(m.group("path"))
            if repo is None or path not in repo.files or m.group("commit") != repo.commit:
                self._record(self._error_sent(404, "EntryNotFound", "no such object"), 0)
                return
            self._file(m.group("repo"), repo, path, {})
            return
        self._record(self._error_sent(404, "RepoNotFound", "no such route"), 0)

    def _api(self, repo_id: str, kind: str | None, rest: str, query: dict[str, list[str]]) -> int:
        repo, status = self._repo(repo_id)
        if repo is None:
            return status
        rev, _, sub = rest.partition("/")
        commit = self._commit(repo, rev or "main")
        if commit is None:
            return self._error_sent(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if kind in (None, "revision"):
            info = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": repo.private,
                    "gated": "manual" if repo.gated else False,
                    "siblings": [{"rfilename": p} for p in sorted(repo.files)]}
            self._json(info)
            return 200
        if kind == "tree":
            prefix = unquote(sub).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries = []
            for p in sorted(repo.files):
                if prefix and not p.startswith(prefix + "/"):
                    continue
                tail = p[len(prefix) + 1:] if prefix else p
                if "/" in tail and not recursive:
                    folder = (prefix + "/" if prefix else "") + tail.split("/")[0]
                    if not any(e.get("path") == folder for e in entries):
                        entries.append({"type": "directory", "path": folder, "oid": "0" * 40, "size": 0})
                    continue
                entries.append(repo.entry(p))
            self._json(entries)
            return 200
        form = parse_qs(getattr(self, "_body", b"").decode())
        paths = form.get("paths", [])
        self._json([repo.entry(p) for p in paths if p in repo.files])
        return 200

    def _resolve(self, repo_id: str, rev: str, path: str) -> None:
        repo, status = self._repo(repo_id)
        if repo is None:
            self._record(status, 0)
            return
        if repo.gated and not self._authorized(repo):
            code = 403 if self.headers.get("Authorization") else 401
            self._record(self._error_sent(code, "GatedRepo", "Access to model is restricted"), 0)
            return
        commit = self._commit(repo, rev)
        if commit is None:
            self._record(self._error_sent(404, "RevisionNotFound", f"Invalid rev id: {rev}"), 0)
            return
        if path not in repo.files:
            self._record(self._error_sent(404, "EntryNotFound", f"{path} does not exist",
                                          {"X-Repo-Commit": commit}), 0)
            return
        entry = repo.entry(path)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry["oid"]}"'}
        if "lfs" in entry:
            headers["X-Linked-Size"] = str(entry["size"])
            headers["X-Linked-Etag"] = f'"{entry["lfs"]["oid"]}"'
            if self.hub.redirect_lfs:
                headers["Location"] = f"http://localhost:{self.hub.port}/cdn/{repo_id}/{commit}/{path}"
                self._record(self._send(302, b"", headers), 0)
                return
        self._file(repo_id, repo, path, headers)

    def _file(self, repo_id: str, repo: HubRepo, path: str, headers: dict[str, str]) -> None:
        disk = Path(repo.files[path])
        size = disk.stat().st_size
        entry = repo.entry(path)
        headers = {**headers, "Accept-Ranges": "bytes"}
        headers.setdefault("ETag", f'"{entry.get("lfs", {}).get("oid", entry["oid"])}"')
        fault = self.hub.fault() if self.command == "GET" else None
        if fault in ("429", "500", "503"):
            self._record(self._send(int(fault), b"", {"Retry-After": "0"} if fault == "429" else {}), 0)
            return
        start, end, status = 0, size, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m is None or int(m.group(1)) >= size:
                self._record(self._send(416, b"", {"Content-Range": f"bytes */{size}"}), 0)
                return
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        req = Request(self.command, self.path, rng, self.headers.get("Authorization"), status, 0)
        self.hub.note(req)  # logged before the client can see the answer: no race with the test's checks
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if self.command == "GET":
            stop = start + (end - start) // 2 if fault == "cut" else end
            with disk.open("rb") as fh:
                fh.seek(start)
                pos = start
                while pos < stop:
                    chunk = fh.read(min(1 << 20, stop - pos))
                    if not chunk:
                        break
                    self.hub.count(repo_id, path, len(chunk), req)  # before the client can see it: no race
                    self.wfile.write(chunk)
                    pos += len(chunk)
            if fault == "cut":
                self.wfile.flush()
                self.close_connection = True
