"""SHA-256 of checkpoint files, streamed; can run in a background thread while tensors are read.

Files read from the Hub are never downloaded to be hashed: the Hub's LFS pointer gives their SHA-256, and
`remember_remote` registers it under the file's `hf:` name, which `BackgroundHasher` reports as is.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

CHUNK = 16 * 1024 * 1024

# Digests already known in this process, by (absolute path, size, mtime_ns): filled by `remember` (batch
# audits hash a model's files for the cache key first) so the record's file hashes are not computed twice.
_KNOWN: dict[tuple[str, int, int], str] = {}
# Files that live elsewhere (the Hub), by their name in Checkpoint.files: (bytes, sha256 or None when unknown).
_REMOTE: dict[str, tuple[int, str | None]] = {}


def sha256_file(path: Path) -> str:
    from audit.safeio import regular_file

    regular_file(path)  # a FIFO or device would never end
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def remember(path: Path, digest: str) -> None:
    """Note that `path`, as it is now on disk, has SHA-256 `digest` (used by `hashed`)."""
    _KNOWN[_stat_key(path)] = digest


def remember_remote(name: str, size: int, sha256: str | None) -> None:
    """Note that the remote file called `name` (as in Checkpoint.files) has `size` bytes and SHA-256 `sha256`."""
    _REMOTE[name] = (size, sha256)


def file_row(path: Path) -> dict[str, Any]:
    """{path, bytes, sha256} of one checkpoint file: a remembered remote file, or a local one hashed."""
    remote = _REMOTE.get(str(path))
    if remote is not None:
        return {"path": str(path), "bytes": remote[0], "sha256": remote[1]}
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": hashed(path)}


def is_remote(path: Path) -> bool:
    """Whether `path` names a remembered remote (Hub) file, whose size and digest are known without reading it."""
    return str(path) in _REMOTE


def file_size(path: Path) -> int:
    """Bytes of one checkpoint file, a remembered remote one included (0 when it is neither)."""
    remote = _REMOTE.get(str(path))
    if remote is not None:
        return remote[0]
    return path.stat().st_size if path.is_file() else 0


def hashed(path: Path) -> str:
    """SHA-256 of `path`, reusing a digest `remember`ed for the same path, size and mtime."""
    key = _stat_key(path)
    digest = _KNOWN.get(key)
    if digest is None:
        digest = sha256_file(path)
    return digest


class BackgroundHasher:
    """Hash files on a thread (hashlib releases the GIL) so hashing overlaps with fingerprinting."""

    def __init__(self, files: list[Path]) -> None:
        self.files = list(files)
        self._result: list[dict[str, Any]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = [file_row(f) for f in self.files]
        except BaseException as exc:  # surfaced in result()
            self._error = exc

    def result(self) -> list[dict[str, Any]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result or []
