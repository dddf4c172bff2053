"""SHA-256 of checkpoint files, streamed; can run in a background thread while tensors are read."""

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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def remember(path: Path, digest: str) -> None:
    """Note that `path`, as it is now on disk, has SHA-256 `digest` (used by `hashed`)."""
    _KNOWN[_stat_key(path)] = digest


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
            self._result = [{"path": str(f), "bytes": f.stat().st_size, "sha256": hashed(f)} for f in self.files]
        except BaseException as exc:  # surfaced in result()
            self._error = exc

    def result(self) -> list[dict[str, Any]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result or []
