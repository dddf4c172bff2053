"""SHA-256 of checkpoint files, streamed; can run in a background thread while tensors are read."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

CHUNK = 16 * 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class BackgroundHasher:
    """Hash files on a thread (hashlib releases the GIL) so hashing overlaps with fingerprinting."""

    def __init__(self, files: list[Path]) -> None:
        self.files = list(files)
        self._result: list[dict] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in self.files]
        except BaseException as exc:  # surfaced in result()
            self._error = exc

    def result(self) -> list[dict]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result or []
