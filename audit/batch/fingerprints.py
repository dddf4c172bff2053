"""Stored weight fingerprints of batch rows and the pairwise comparisons between them, in the batch cache.

A row's fingerprint is keyed by the SHA-256 of the model's files (with the seed, the pickle option and the
tool version), not by the batch or the row's name, so a rerun or another batch over the same files reuses it.
Layout under the cache folder:
  fingerprints/<k[:2]>/<k>.safetensors   the fingerprint (provaudit.weights, see audit.fingerprinting.reference)
  fingerprints/<k[:2]>/<k>.json          its entry: the file's SHA-256, or why the model cannot be fingerprinted
  pairs/<k[:2]>/<k>.json                 one pairwise comparison's outcome (plain JSON values)
An entry that does not parse, names another key or tool version, or whose file does not match its SHA-256 is
reported as corrupt and rebuilt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import __version__
from audit.batch.cache import digest
from audit.checkpoint.hashing import sha256_file
from audit.errors import InputError
from audit.reporting.writer import write_atomic
from audit.safeio import load_json

FINGERPRINT_SCHEMA = "provaudit.batch-fingerprint/1"
FINGERPRINT_KEY_SCHEMA = "provaudit.batch-fingerprint-key/1"
PAIR_SCHEMA = "provaudit.batch-pair/1"
MAX_ENTRY_BYTES = 1 << 20


def fingerprint_key(files: list[list[str | None]], seed: int, allow_pickle: bool) -> str:
    """The cache key of a model's fingerprint: its files' names and SHA-256, the seed, the pickle option."""
    return digest({"schema": FINGERPRINT_KEY_SCHEMA, "tool": __version__, "files": files, "seed": seed,
                   "allow_pickle": allow_pickle})


@dataclass
class FingerprintEntry:
    """What the cache holds for a key: status "hit" (`path`, or the `error` that stops fingerprinting),
    "miss" or "corrupt" (with the reason)."""

    status: str
    path: Path | None = None
    error: str | None = None
    reason: str | None = None


def _read_entry(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the entry's JSON object, or None with the reason it cannot be used)."""
    try:
        data = load_json(path, MAX_ENTRY_BYTES, "cache entry")  # a bounded regular file, bounded JSON
    except InputError as exc:
        return None, str(exc).rsplit(": ", 1)[-1]
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


class FingerprintCache:
    """Rows' weight fingerprints (and the reasons some rows have none) under `root/fingerprints`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "fingerprints"

    def file_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def entry_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def present(self, key: str) -> bool:
        """An entry exists (not checked: `get` checks it)."""
        return self.entry_path(key).is_file()

    def get(self, key: str) -> FingerprintEntry:
        entry = self.entry_path(key)
        if not entry.is_file():
            return FingerprintEntry("miss")
        data, problem = _read_entry(entry)
        if data is None:
            return FingerprintEntry("corrupt", reason=problem)
        if data.get("schema") != FINGERPRINT_SCHEMA or data.get("key") != key or data.get("tool") != __version__:
            return FingerprintEntry("corrupt", reason="written for another key, schema or provaudit version")
        if data.get("status") == "error" and isinstance(data.get("error"), str):
            return FingerprintEntry("hit", error=data["error"])
        path = self.file_path(key)
        if data.get("status") != "ok" or not path.is_file():
            return FingerprintEntry("corrupt", reason="the fingerprint file is missing")
        try:
            if path.stat().st_size != data.get("bytes") or sha256_file(path) != data.get("sha256"):
                return FingerprintEntry("corrupt", reason="the fingerprint does not match its SHA-256")
        except OSError as exc:
            return FingerprintEntry("corrupt", reason=f"unreadable ({type(exc).__name__})")
        return FingerprintEntry("hit", path=path)

    def put_file(self, key: str, built: Path) -> Path:
        """Move a fingerprint written at `built` (same folder) into place and record its SHA-256."""
        path = self.file_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"schema": FINGERPRINT_SCHEMA, "key": key, "tool": __version__, "status": "ok",
                "bytes": built.stat().st_size, "sha256": sha256_file(built)}
        built.replace(path)
        write_atomic(self.entry_path(key), json.dumps(body) + "\n")  # last: the entry vouches for the file
        return path

    def put_error(self, key: str, error: str) -> None:
        """Why the model with these files cannot be fingerprinted (the same files give the same answer)."""
        body = {"schema": FINGERPRINT_SCHEMA, "key": key, "tool": __version__, "status": "error", "error": error}
        write_atomic(self.entry_path(key), json.dumps(body, ensure_ascii=False) + "\n")


class PairCache:
    """Outcomes of pairwise fingerprint comparisons under `root/pairs`, checked by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "pairs"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored outcome, or None (missing or not trustworthy: compared again)."""
        path = self.path(key)
        if not path.is_file():
            return None
        data, _ = _read_entry(path)
        if data is None or data.get("schema") != PAIR_SCHEMA or data.get("key") != key \
                or data.get("tool") != __version__ or not isinstance(data.get("result"), dict) \
                or data["result"].get("status") not in ("compared", "skipped") \
                or digest(data["result"]) != data.get("sha256"):
            return None
        result: dict[str, Any] = data["result"]
        return result

    def put(self, key: str, result: dict[str, Any]) -> None:
        result = json.loads(json.dumps(result, allow_nan=False))
        body = {"schema": PAIR_SCHEMA, "key": key, "tool": __version__, "sha256": digest(result), "result": result}
        write_atomic(self.path(key), json.dumps(body, ensure_ascii=False, allow_nan=False) + "\n")
