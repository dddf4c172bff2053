"""Byte sources: where a weight file's bytes come from (a local file, or an HTTP range source for the Hub).

A source answers `read(offset, length)` and knows its `size` and `name`. Every checkpoint counts what its
sources read in one `IOCounter` (bytes read, requests, and, over HTTP, bytes actually fetched), so the
record can say how much of a model an audit touched.

`read_ranges` is the one planner every row read goes through: it takes the byte ranges a set of row reads
needs, merges ranges that are close (a small gap is cheaper to read than another request), splits very long
ones (so HTTP can fetch them in parallel) and reads them, concurrently when the source is remote.
"""

from __future__ import annotations

import bisect
import os
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from audit.errors import InputError
from audit.safeio import display_path

if TYPE_CHECKING:
    from audit.record.models import ReadStats

LOCAL_GAP = 4 << 10  # merge local runs closer than this (one page: the kernel reads whole pages anyway)
REMOTE_GAP = 4 << 10  # merge HTTP runs closer than this (bytes count more than requests, which run in parallel)
REMOTE_PART = 16 << 20  # split HTTP ranges longer than this, to fetch the parts concurrently
REMOTE_WORKERS = 16
_PREAD_MAX = 1 << 30  # Linux returns at most ~2 GiB per pread; ask for less


@dataclass
class IOCounter:
    """What a checkpoint's readers read: thread-safe, shared by all of its files."""

    source: str = "local"  # local | hub
    bytes_total: int = 0  # size of the weight files
    bytes_read: int = 0  # bytes handed to the readers (headers, metadata, tensor rows)
    reads: int = 0  # range reads issued to the sources (after merging)
    bytes_fetched: int = 0  # over HTTP: bytes received from the server (0 when a warm range cache served them)
    http_requests: int = 0  # over HTTP: range requests sent
    endpoint: str | None = None  # hub endpoint
    revision: str | None = None  # hub commit
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_read(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self.reads += 1

    def add_fetch(self, nbytes: int, requests: int = 0) -> None:
        with self._lock:
            self.bytes_fetched += nbytes
            self.http_requests += requests

    def to_record(self) -> ReadStats:
        from audit.record.models import ReadStats

        remote = self.source != "local"
        return ReadStats(
            source=self.source, bytes_total=self.bytes_total, bytes_read=self.bytes_read, reads=self.reads,
            bytes_fetched=self.bytes_fetched if remote else None, http_requests=self.http_requests if remote else None,
            endpoint=self.endpoint, revision=self.revision,
        )


@runtime_checkable
class ByteSource(Protocol):
    """Random access to the bytes of one file."""

    name: str
    size: int
    remote: bool

    def read(self, offset: int, length: int) -> bytes | bytearray: ...


class LocalFileSource:
    """A regular local file read with os.pread (no shared file position: safe from several threads)."""

    remote = False

    def __init__(self, path: Path, counter: IOCounter | None = None) -> None:
        self.path = path
        self.name = str(path)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise InputError(f"{display_path(path)}: cannot open ({exc.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO, socket or device"
            raise InputError(f"{display_path(path)}: not a regular file ({kind}); refusing to read it")
        self._fd = fd
        self.size = st.st_size
        self.counter = counter if counter is not None else IOCounter()

    def read(self, offset: int, length: int) -> bytes | bytearray:
        _check_range(self, offset, length)
        got = 0
        if length <= _PREAD_MAX:
            data = os.pread(self._fd, length, offset)
            if len(data) == length:
                self.counter.add_read(length)
                return data
            got = len(data)  # a short read: only when the file shrank under us
        buf = bytearray(length)  # big reads fill one buffer in place: no second copy of a big tensor
        view = memoryview(buf)
        if got:
            view[:got] = data
        while got < length:
            n = os.preadv(self._fd, [view[got:got + min(_PREAD_MAX, length - got)]], offset + got)
            if n <= 0:
                raise InputError(f"{display_path(self.path)}: file ended at byte {offset + got} (truncated while reading?)")
            got += n
        self.counter.add_read(length)
        return buf

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _check_range(src: ByteSource, offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > src.size:
        raise InputError(f"{display_path(src.name)}: read of bytes {offset}..{offset + length} past the end of the file ({src.size} bytes)")


def plan_ranges(ranges: Sequence[tuple[int, int]], gap: int, part: int | None = None) -> list[tuple[int, int]]:
    """Merge (start, end) byte ranges closer than `gap` into runs, then split runs longer than `part`."""
    merged: list[list[int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[tuple[int, int]] = []
    for start, end in merged:
        if part is None or end - start <= part:
            out.append((start, end))
        else:
            n = -(-(end - start) // part)
            step = -(-(end - start) // n)
            out += [(s, min(end, s + step)) for s in range(start, end, step)]
    return out


class RangeData:
    """Bytes of a set of merged runs of one source; `view(start, end)` returns any range inside one run."""

    def __init__(self, runs: list[tuple[int, int]], blobs: list[bytes | bytearray]) -> None:
        self._starts = [s for s, _ in runs]
        self._runs = runs
        self._blobs = [memoryview(b) for b in blobs]

    def view(self, start: int, end: int) -> memoryview | bytes:
        i = bisect.bisect_right(self._starts, start) - 1
        if i < 0:
            raise KeyError((start, end))
        s, e = self._runs[i]
        if end <= e:
            return self._blobs[i][start - s:end - s]
        # the range spans runs that were split for parallel fetching: join them
        parts, pos = [], start
        while pos < end:
            i = bisect.bisect_right(self._starts, pos) - 1
            if i < 0 or pos >= self._runs[i][1]:
                raise KeyError((start, end))
            s, e = self._runs[i]
            parts.append(self._blobs[i][pos - s:min(end, e) - s])
            pos = min(end, e)
        return b"".join(parts)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One thread pool for all remote range reads of the process (reads never wait on the pool themselves)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=REMOTE_WORKERS, thread_name_prefix="provaudit-range")
        return _POOL


def read_ranges(src: ByteSource, ranges: Sequence[tuple[int, int]]) -> RangeData:
    """Read the byte ranges `ranges` of `src` in as few, as concurrent requests as is sensible."""
    if src.remote:
        runs = plan_ranges(ranges, REMOTE_GAP, REMOTE_PART)
    else:
        runs = plan_ranges(ranges, LOCAL_GAP)
    try:
        if src.remote and len(runs) > 1:
            blobs = list(_pool().map(lambda r: src.read(r[0], r[1] - r[0]), runs))
        else:
            blobs = [src.read(s, e - s) for s, e in runs]
    finally:
        flush = getattr(src, "flush", None)
        if flush is not None:
            flush()
    return RangeData(runs, blobs)
