"""Models on the Hugging Face Hub (or a mirror), read by reference: HTTP range requests, not downloads.

`hf:ORG/NAME[@REVISION]` names a repository (a plain `ORG/NAME` that is neither a local path nor in the local
HF cache means the same); `hf:ORG/NAME/PATH/FILE.gguf[@REVISION]` names one GGUF file in it. Everything goes
through huggingface_hub, so HF_ENDPOINT (mirrors), HF_TOKEN (or a stored login), HF_HUB_OFFLINE and the HF
cache behave as they do for every other Hub tool:

* the revision is resolved to a commit (`model_info`), the files are listed with their sizes and LFS SHA-256
  (`list_repo_tree`); the record's file hashes are those SHA-256 values, nothing is downloaded to hash;
* weights: the shards of `model.safetensors.index.json`, else the root `*.safetensors` files, else one GGUF
  file. When a repository holds several GGUF files and none is named, the one with the most precise
  quantization is used (`GGUF_PREFERENCE`: Q8_0, then BF16/F16, then Q6_K, Q5_K_M, ..., ties by name; vision
  projectors `mmproj*` and split GGUFs are skipped); the record's path names the file that was read;
* small files (card, config, generation config, tokenizer files, the safetensors index, licence) are
  downloaded with `hf_hub_download` into the HF cache;
* weight files are opened as `HubSource`s: ranges are fetched with HTTP range requests (huggingface_hub's
  session and headers), retried with backoff on 429/5xx and dropped connections, resumed where an interrupted
  transfer stopped, and kept in an on-disk range cache keyed by commit, file and ETag, so a rerun fetches
  nothing it already has.

Unreachable hubs, gated or private repositories (401/403), and missing repositories, revisions or files are
one-line InputErrors.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import hashlib
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from audit.checkpoint.source import IOCounter, _check_range
from audit.errors import InputError

if TYPE_CHECKING:
    from audit.checkpoint.model import Checkpoint

T = TypeVar("T")

SMALL_FILES = (
    "README.md", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "tokenizer.model", "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json",
    "chat_template.jinja", "model.safetensors.index.json", "LICENSE", "LICENSE.md", "LICENSE.txt",
)
MAX_SMALL_FILE = 64 << 20
MAX_REPO_FILES = 100_000
MAX_SHARDS = 4096
# Which GGUF file of a repository is read when none is named: the first tag found in its name, in this order.
GGUF_PREFERENCE = ("Q8_0", "BF16", "F16", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1",
                   "Q4_0", "IQ4_XS", "IQ4_NL", "Q3_K_L", "Q3_K_M", "Q3_K_S", "IQ3_M", "IQ3_XXS", "Q2_K", "F32")
RETRY_STATUS = (429, 500, 502, 503, 504)
RETRIES = 5  # attempts without progress before a transfer is given up
BACKOFF = 0.5  # seconds before the first retry; doubles each time, at most BACKOFF_MAX
BACKOFF_MAX = 8.0
TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
PERSIST_EVERY = 32 << 20  # range-cache bookkeeping is saved at least this often during a long transfer

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class HubRef:
    """A repository on the Hub, optionally one file in it and a revision (branch, tag or commit)."""

    repo_id: str
    filename: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        return "hf:" + self.repo_id + (f"/{self.filename}" if self.filename else "") + (f"@{self.revision}" if self.revision else "")


def parse_hub_ref(text: str) -> HubRef | None:
    """`hf:ORG/NAME[/FILE][@REV]` -> HubRef; anything else -> None. A malformed hf: reference is an InputError."""
    if not text.startswith("hf:"):
        return None
    body = text[3:].lstrip("/")
    revision = None
    if "@" in body:
        body, revision = body.split("@", 1)
        if not revision:
            raise InputError(f"{text}: empty revision after '@'")
    parts = body.split("/")
    repo_id = "/".join(parts[:2])
    if len(parts) < 2 or not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise InputError(f"{text}: not a Hub reference (expected hf:ORG/NAME[@REVISION] or hf:ORG/NAME/FILE.gguf[@REVISION])")
    filename = "/".join(parts[2:]) or None
    if filename is not None and (any(p in ("", ".", "..") for p in parts[2:]) or not filename.endswith((".gguf", ".safetensors"))):
        raise InputError(f"{text}: a file in a Hub reference must be a .gguf or .safetensors path inside the repository")
    return HubRef(repo_id, filename, revision)


def looks_like_repo_id(text: str) -> bool:
    """A plain `ORG/NAME` (which, when it is no local path, means a Hub repository)."""
    return bool(_REPO_RE.match(text)) and ".." not in text and not text.startswith((".", "/"))


def endpoint() -> str:
    """The Hub endpoint: HF_ENDPOINT as set now (a mirror), else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_cache_dir() -> Path:
    """The HF cache (HF_HUB_CACHE, HF_HOME/hub, or huggingface_hub's default), as set now."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(constants.HF_HUB_CACHE)


def range_cache_dir() -> Path:
    """Where fetched byte ranges are kept: PROVAUDIT_HUB_CACHE, else <provaudit cache>/hub."""
    if os.environ.get("PROVAUDIT_HUB_CACHE"):
        return Path(os.environ["PROVAUDIT_HUB_CACHE"])
    root = os.environ.get("PROVAUDIT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "provaudit")
    return Path(root) / "hub"


# ------------------------------------------------------------------------------------------ errors


def _offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def hub_error(exc: BaseException, what: str, where: str) -> InputError:
    """One line saying why `what` could not be read from the Hub at `where`."""
    import httpx2
    from huggingface_hub import errors

    for e in _chain(exc):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, errors.GatedRepoError):
            return InputError(f"{what}: the repository is gated (HTTP {status}): accept its terms on the Hub and set "
                              "HF_TOKEN to a token of an account with access")
        if isinstance(e, errors.RevisionNotFoundError):
            return InputError(f"{what}: no such revision on {where}")
        if isinstance(e, errors.RemoteEntryNotFoundError):
            return InputError(f"{what}: no such file in the repository on {where}")
        if isinstance(e, errors.RepositoryNotFoundError):
            if status == 401:
                return InputError(f"{what}: repository not found, or private (HTTP 401 from {where}): check the name, "
                                  "or set HF_TOKEN to a token with access")
            return InputError(f"{what}: no such repository on {where}")
        if isinstance(e, errors.OfflineModeIsEnabled):
            return InputError(f"{what}: HF_HUB_OFFLINE is set, and the model is not in the local cache")
        if isinstance(e, errors.HfHubHTTPError) and status is not None:
            if status in (401, 403):
                return InputError(f"{what}: access denied (HTTP {status} from {where}): the repository may be gated "
                                  "or private; set HF_TOKEN to a token with access")
            if status == 404:
                return InputError(f"{what}: not found (HTTP 404 from {where})")
            return InputError(f"{what}: the Hub at {where} answered HTTP {status}")
        if isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return InputError(f"{what}: cannot reach the Hub at {where} ({type(e).__name__}: {_short(e)}); "
                              "check the network, or set HF_ENDPOINT to a reachable mirror")
        if isinstance(e, errors.HFValidationError):
            return InputError(f"{what}: {_short(e)}")
    return InputError(f"{what}: reading from the Hub at {where} failed ({type(exc).__name__}: {_short(exc)})")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _retrying(fn: Callable[[], T], what: str, where: str) -> T:
    """Call `fn` (a Hub API call), retrying 429/5xx and dropped connections with backoff; errors as InputError."""
    import httpx2
    from huggingface_hub import errors

    for attempt in range(RETRIES + 1):
        try:
            return fn()
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line
            status = getattr(getattr(exc, "response", None), "status_code", None)
            transient = (isinstance(exc, errors.HfHubHTTPError) and status in RETRY_STATUS) or (
                isinstance(exc, httpx2.TransportError) and not isinstance(exc, httpx2.ConnectError))
            if not transient or attempt == RETRIES:
                raise hub_error(exc, what, where) from None
            time.sleep(min(BACKOFF * 2**attempt, BACKOFF_MAX))
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------ range cache


class RangeCache:
    """Byte ranges of one remote file kept on disk: a sparse file of the remote size and the list of ranges it
    holds (saved atomically). Keyed by endpoint, repository, commit, file and ETag, so its bytes are the
    remote file's; an interrupted transfer keeps what arrived."""

    def __init__(self, root: Path, key: str, size: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.data_path = root / f"{key}.part"
        self.meta_path = root / f"{key}.ranges.json"
        self.size = size
        self._lock = threading.RLock()
        fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
        self._fd = fd
        self._starts: list[int] = []
        self._ends: list[int] = []
        for a, b in self._load():
            self._add(a, b)
        self._unsaved = 0
        self._saved_at = time.monotonic()
        _OPEN_CACHES.add(self)

    def _load(self) -> list[tuple[int, int]]:
        try:
            data = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("size") != self.size:
                return []
            return [(int(a), int(b)) for a, b in data["ranges"] if 0 <= int(a) < int(b) <= self.size]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _add(self, a: int, b: int) -> None:
        """Insert [a, b), merging with the ranges it touches (kept sorted and disjoint)."""
        i = bisect.bisect_left(self._ends, a)  # first range that ends at or after a
        j = bisect.bisect_right(self._starts, b)  # ranges i..j-1 touch [a, b)
        if i < j:
            a, b = min(a, self._starts[i]), max(b, self._ends[j - 1])
        self._starts[i:j] = [a]
        self._ends[i:j] = [b]

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        with self._lock:
            out, pos = [], start
            i = bisect.bisect_right(self._ends, start)  # first range ending after start
            while pos < end and i < len(self._starts) and self._starts[i] < end:
                if self._starts[i] > pos:
                    out.append((pos, self._starts[i]))
                pos = max(pos, self._ends[i])
                i += 1
            if pos < end:
                out.append((pos, end))
            return out

    def write(self, pos: int, data: bytes) -> None:
        written = 0
        view = memoryview(data)
        while written < len(data):
            written += os.pwrite(self._fd, view[written:], pos + written)
        with self._lock:
            self._add(pos, pos + len(data))
            self._unsaved += len(data)
        self.save(force=False)

    def read(self, start: int, length: int) -> bytes:
        data = os.pread(self._fd, length, start)
        if len(data) != length:
            raise InputError(f"{self.data_path}: range cache file is shorter than expected")
        return data

    def save(self, force: bool = True) -> None:
        """Write the list of ranges held (merged with what another process may have saved meanwhile); unless
        `force`, only when the last save is a second old or much has arrived since (it is at exit anyway)."""
        with self._lock:
            if not self._unsaved:
                return
            if not force and self._unsaved < PERSIST_EVERY and time.monotonic() - self._saved_at < 1.0:
                return
            for a, b in self._load():
                self._add(a, b)
            ranges = [[a, b] for a, b in zip(self._starts, self._ends, strict=True)]
            tmp = self.meta_path.with_name(f"{self.meta_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"size": self.size, "ranges": ranges}), encoding="utf-8")
            os.replace(tmp, self.meta_path)
            self._unsaved = 0
            self._saved_at = time.monotonic()

    def cached_bytes(self) -> int:
        with self._lock:
            return sum(b - a for a, b in zip(self._starts, self._ends, strict=True))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.save()
        with contextlib.suppress(Exception):
            os.close(self._fd)


_OPEN_CACHES: weakref.WeakSet[RangeCache] = weakref.WeakSet()


@atexit.register
def _save_open_caches() -> None:
    for cache in list(_OPEN_CACHES):
        with contextlib.suppress(Exception):
            cache.save()


# ------------------------------------------------------------------------------------------ HTTP range source


class _Transient(Exception):
    """A response worth retrying (429/5xx, a body cut short)."""


class HubSource:
    """One remote file read by HTTP range requests, through an optional on-disk range cache."""

    remote = True

    def __init__(self, name: str, url: str, size: int, headers: dict[str, str], counter: IOCounter,
                 cache: RangeCache | None, where: str) -> None:
        self.name, self.url, self.size, self.headers = name, url, size, headers
        self.counter, self.cache, self.where = counter, cache, where

    def read(self, offset: int, length: int) -> bytes:
        _check_range(self, offset, length)
        if self.cache is None:
            buf = bytearray(length)

            def sink(pos: int, data: bytes) -> None:
                buf[pos - offset:pos - offset + len(data)] = data

            self._fetch(offset, offset + length, sink)
            out = bytes(buf)
        else:
            try:
                for a, b in self.cache.missing(offset, offset + length):
                    self._fetch(a, b, self.cache.write)
            except BaseException:
                self.cache.save()  # keep what arrived: the next run resumes from there
                raise
            out = self.cache.read(offset, length)
        self.counter.add_read(length)
        return out

    def flush(self) -> None:
        """Save the range cache's bookkeeping after a batch of reads (at most once a second; always at exit)."""
        if self.cache is not None:
            self.cache.save(force=False)

    def _fetch(self, start: int, end: int, sink: Callable[[int, bytes], None]) -> None:
        """Bytes start..end-1 into `sink`, resuming where a dropped transfer stopped."""
        import httpx2
        from huggingface_hub.utils import get_session

        session = get_session()
        pos, failures = start, 0
        while pos < end:
            before = pos
            try:
                headers = {**self.headers, "Range": f"bytes={pos}-{end - 1}", "Accept-Encoding": "identity"}
                self.counter.add_fetch(0, 1)
                with session.stream("GET", self.url, headers=headers, timeout=httpx2.Timeout(TIMEOUT[1], connect=TIMEOUT[0]),
                                    follow_redirects=True) as r:
                    self._check_response(r, pos)
                    for chunk in r.iter_bytes():  # as it arrives: a cut keeps what came
                        take = chunk[:end - pos]
                        if take:
                            sink(pos, take)
                            pos += len(take)
                            self.counter.add_fetch(len(take))
                        if len(take) < len(chunk):
                            break  # more than was asked for: drop the connection rather than read on
                    # a body read to its end leaves the connection in the pool for the next request
                if pos < end:
                    raise _Transient("the body ended early")
            except InputError:
                raise
            except (_Transient, httpx2.TransportError) as exc:
                failures = 0 if pos > before else failures + 1
                if failures > RETRIES:
                    raise InputError(f"{self.name}: fetching bytes {pos}..{end} from {self.where} failed "
                                     f"{RETRIES + 1} times in a row ({type(exc).__name__}: {_short(exc)})") from None
                if failures:
                    time.sleep(min(BACKOFF * 2 ** (failures - 1), BACKOFF_MAX))
            except Exception as exc:  # noqa: BLE001 - huggingface_hub's HTTP errors
                raise hub_error(exc, self.name, self.where) from None

    def _check_response(self, r: Any, pos: int) -> None:
        from huggingface_hub.utils import hf_raise_for_status

        if r.status_code in RETRY_STATUS:
            raise _Transient(f"HTTP {r.status_code}")
        if r.status_code == 200:
            if pos != 0:
                raise InputError(f"{self.name}: {self.where} does not answer HTTP range requests (200 for a Range)")
            return
        if r.status_code != 206:
            r.read()
            hf_raise_for_status(r)
            raise InputError(f"{self.name}: unexpected HTTP {r.status_code} from {self.where}")
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", r.headers.get("Content-Range", ""))
        if m is None or int(m.group(1)) != pos:
            raise InputError(f"{self.name}: {self.where} answered a range request with the wrong range "
                             f"({r.headers.get('Content-Range')!r} for bytes {pos}-)")
        if m.group(3) != "*" and int(m.group(3)) != self.size:
            raise InputError(f"{self.name}: the file changed on {self.where} ({m.group(3)} bytes, listed as {self.size})")


# ------------------------------------------------------------------------------------------ repositories


@dataclass(frozen=True)
class _File:
    path: str
    size: int
    sha256: str | None  # LFS files only


def open_hub(ref: HubRef, name: str | None = None) -> Checkpoint:
    """Open a Hub repository (or one GGUF file in it) for lazy, counted, range-request reading."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    from audit import __version__

    where = endpoint()
    what = str(ref)
    if _offline():
        raise InputError(f"{what}: HF_HUB_OFFLINE is set, and the model is not in the local Hugging Face cache")
    api = HfApi(endpoint=where, library_name="provaudit", library_version=__version__)
    info = _retrying(lambda: api.model_info(ref.repo_id, revision=ref.revision, timeout=TIMEOUT[1]), what, where)
    commit = getattr(info, "sha", None)
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise InputError(f"{what}: the Hub at {where} did not say which commit {ref.revision or 'main'} is")

    def listing() -> dict[str, _File]:
        out: dict[str, _File] = {}
        for entry in api.list_repo_tree(ref.repo_id, revision=commit, recursive=True):
            if isinstance(entry, RepoFile):
                out[entry.path] = _File(entry.path, int(entry.size), entry.lfs.sha256 if entry.lfs else None)
                if len(out) > MAX_REPO_FILES:
                    raise InputError(f"{what}: the repository lists more than {MAX_REPO_FILES} files")
        return out

    files = _retrying(listing, what, where)
    small = _download_small(api, ref, commit, files, what, where)
    folder = _snapshot_folder(ref.repo_id, commit)
    weights, kind = _choose_weights(ref, files, small, what)
    counter = IOCounter(source="hub", bytes_total=sum(f.size for f in weights), endpoint=where, revision=commit)
    sources = _open_sources(ref, commit, weights, counter, what, where)
    try:
        ckpt = _build(ref, commit, kind, weights, sources, folder, counter)
    finally:
        for src in sources:
            src.flush()
    ckpt.name = name or ref.repo_id
    return ckpt


def _download_small(api: Any, ref: HubRef, commit: str, files: dict[str, _File], what: str, where: str) -> dict[str, Path]:
    """Card, config, tokenizer, index and licence files, downloaded with huggingface_hub into its cache."""
    from huggingface_hub import hf_hub_download

    wanted = [f for f in SMALL_FILES if f in files and files[f].size <= MAX_SMALL_FILE]
    out: dict[str, Path] = {}

    def one(fname: str) -> tuple[str, Path]:
        path = _retrying(lambda: hf_hub_download(ref.repo_id, fname, revision=commit, endpoint=where,
                                                 cache_dir=hub_cache_dir(), library_name=api.library_name,
                                                 library_version=api.library_version), f"{what} ({fname})", where)
        return fname, Path(str(path))

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet_before = are_progress_bars_disabled()
    disable_progress_bars()  # small files: the command's own progress display is enough
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for fname, path in pool.map(one, wanted):
                out[fname] = path
    finally:
        if not quiet_before:
            enable_progress_bars()
    return out


def _snapshot_folder(repo_id: str, commit: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit


def _choose_weights(ref: HubRef, files: dict[str, _File], small: dict[str, Path], what: str) -> tuple[list[_File], str]:
    """The weight files to read and their kind (safetensors | gguf)."""
    if ref.filename is not None:
        if ref.filename not in files:
            raise InputError(f"{what}: no file {ref.filename!r} in the repository at this revision")
        return [files[ref.filename]], "gguf" if ref.filename.endswith(".gguf") else "safetensors"
    if "model.safetensors.index.json" in small:
        from audit.checkpoint.build import index_shards
        from audit.safeio import load_json

        where = f"{what}: model.safetensors.index.json"
        shards = index_shards(load_json(small["model.safetensors.index.json"], what="shard index"), where)
        if len(shards) > MAX_SHARDS:
            raise InputError(f"{what}: the index names {len(shards)} shards")
        missing = [s for s in shards if s not in files]
        if missing:
            raise InputError(f"{what}: shard(s) named by the index are not in the repository: {', '.join(missing[:5])}")
        return [files[s] for s in shards], "safetensors"
    root_st = sorted(p for p in files if p.endswith(".safetensors") and "/" not in p)
    if "model.safetensors" in root_st:
        return [files["model.safetensors"]], "safetensors"
    if root_st:
        return [files[p] for p in root_st], "safetensors"
    gguf = pick_gguf(list(files))
    if gguf is not None:
        return [files[gguf]], "gguf"
    others = sorted({Path(p).suffix for p in files if p.endswith((".bin", ".pt", ".pth", ".onnx", ".ckpt"))})
    hint = f" (it holds {', '.join(others)} files: download it and pass the folder)" if others else ""
    raise InputError(f"{what}: no safetensors or GGUF weights in the repository{hint}")


def pick_gguf(paths: list[str]) -> str | None:
    """The GGUF file read when a repository holds several and none is named (see GGUF_PREFERENCE)."""
    candidates = [p for p in paths if p.endswith(".gguf") and not Path(p).name.lower().startswith("mmproj")
                  and not re.search(r"-\d{5}-of-\d{5}\.gguf$", p)]
    if not candidates:
        return None

    def rank(p: str) -> tuple[int, str]:
        upper = Path(p).name.upper()
        for i, tag in enumerate(GGUF_PREFERENCE):
            if re.search(rf"(?<![A-Z0-9]){re.escape(tag)}(?![A-Z0-9])", upper):
                return i, p
        return len(GGUF_PREFERENCE), p

    return min(candidates, key=rank)


def _open_sources(ref: HubRef, commit: str, weights: list[_File], counter: IOCounter, what: str, where: str) -> list[HubSource]:
    """One HubSource per weight file: its download location and ETag from a HEAD request (in parallel)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from audit import __version__

    def one(f: _File) -> HubSource:
        url = hf_hub_url(ref.repo_id, f.path, revision=commit, endpoint=where)
        meta = _retrying(lambda: get_hf_file_metadata(url, endpoint=where, library_name="provaudit",
                                                      library_version=__version__), f"{what} ({f.path})", where)
        if meta.size is not None and meta.size != f.size:
            raise InputError(f"{what}: {f.path} is {meta.size} bytes on {where} but listed as {f.size}")
        location = meta.location or url
        headers = build_hf_headers(library_name="provaudit", library_version=__version__)
        if _origin(location) != _origin(where):
            headers.pop("authorization", None)  # a signed CDN URL: the token stays with the Hub
            headers.pop("Authorization", None)
        etag = meta.etag or f.sha256 or ""
        cache = _range_cache(where, ref.repo_id, commit, f, etag)
        name = hub_file_name(ref.repo_id, f.path, commit)
        from audit.checkpoint.hashing import remember_remote

        remember_remote(name, f.size, f.sha256)
        return HubSource(name, location, f.size, headers, counter, cache, where)

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(weights)))) as pool:
        return list(pool.map(one, weights))


def hub_file_name(repo_id: str, path: str, commit: str) -> str:
    """How a Hub file is named in Checkpoint.files and the record: hf:ORG/NAME/PATH@COMMIT."""
    return f"hf:{repo_id}/{path}@{commit}"


def _origin(url: str) -> tuple[str, str]:
    p = urlparse(url)
    return p.scheme, p.netloc.lower()


def _range_cache(where: str, repo_id: str, commit: str, f: _File, etag: str) -> RangeCache | None:
    key = hashlib.sha256("\n".join([where, repo_id, commit, f.path, etag]).encode()).hexdigest()[:40]
    root = range_cache_dir()
    with _CACHES_LOCK:
        cache = _LIVE_CACHES.get((str(root), key))  # one per file and process: they share what they fetched
        if cache is None:
            try:
                cache = RangeCache(root, key, f.size)
            except OSError:
                return None  # an unwritable cache only costs refetching
            _LIVE_CACHES[(str(root), key)] = cache
        return cache


_LIVE_CACHES: weakref.WeakValueDictionary[tuple[str, str], RangeCache] = weakref.WeakValueDictionary()
_CACHES_LOCK = threading.Lock()


def _build(ref: HubRef, commit: str, kind: str, weights: list[_File], sources: list[HubSource], folder: Path,
           counter: IOCounter) -> Checkpoint:
    from audit.checkpoint.build import gguf_checkpoint, read_json_object, safetensors_checkpoint

    if kind == "gguf":
        ckpt = gguf_checkpoint(sources[0], Path(hub_file_name(ref.repo_id, weights[0].path, commit)), counter)
        ckpt.path = Path(f"hf:{ref.repo_id}/{weights[0].path}@{commit}")
    else:
        config = read_json_object(folder / "config.json") if (folder / "config.json").is_file() else {}
        from audit.checkpoint.tokenizer_files import load_tokenizer

        tokenizer = load_tokenizer(folder) if folder.is_dir() else None
        paths = [Path(s.name) for s in sources]
        ckpt = safetensors_checkpoint(sources, paths, Path(f"hf:{ref.repo_id}@{commit}"), config, tokenizer,
                                      "hf-folder", counter)
    ckpt.folder = folder if folder.is_dir() else None
    return ckpt


