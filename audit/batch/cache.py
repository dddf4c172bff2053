"""The batch result cache: one JSON entry per audit, keyed by the content of every input and the options.

The key is the SHA-256 of a canonical JSON document naming the tool version, the SHA-256 of each file of
the model and of its references (with the names they are reported under), the registry's files, the probe
suites' files and every option that changes the record. An entry is trusted only if it parses, carries
this schema, its own key and the tool version, and its record still hashes to the digest stored with it;
anything else is reported as corrupt and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import __version__
from audit.errors import InputError
from audit.record.models import SCHEMA as SCHEMA_V2
from audit.reporting.writer import dumps_record, write_atomic
from audit.safeio import load_json

SCHEMA = "provaudit.batch-cache/1"
KEY_SCHEMA = "provaudit.batch-key/1"
RECORD_SCHEMA = SCHEMA_V2
MAX_ENTRY_BYTES = 32 << 20  # a record (at most 16 MiB) and its envelope


def canonical(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces) of plain JSON values, used for keys and digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode("utf-8")).hexdigest()


def make_key(material: dict[str, Any]) -> str:
    """The cache key of an audit described by `material` (inputs' hashes and options)."""
    return digest({"schema": KEY_SCHEMA, "tool": __version__, **material})


@dataclass
class Lookup:
    """What the cache holds for a key: status "hit", "miss" or "corrupt" (with the reason)."""

    status: str
    record: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None


class ResultCache:
    """Entries under `root/results/<key[:2]>/<key>.json`, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entry_path(self, key: str) -> Path:
        return self.root / "results" / key[:2] / f"{key}.json"

    def get(self, key: str) -> Lookup:
        path = self.entry_path(key)
        if not path.is_file():
            return Lookup("miss")
        try:  # a shared cache is input too: a bounded regular file, bounded JSON
            data = load_json(path, MAX_ENTRY_BYTES, "cache entry", max_depth=256)
        except InputError as exc:
            return Lookup("corrupt", reason=str(exc).rsplit(": ", 1)[-1])
        problem = _check(data, key)
        if problem:
            return Lookup("corrupt", reason=problem)
        if data["status"] == "error":
            return Lookup("hit", error=data["error"])
        return Lookup("hit", record=data["record"])

    def put(self, key: str, record: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Store a record (or the input error an audit of these exact files ends with)."""
        body: dict[str, Any] = {"schema": SCHEMA, "key": key, "tool": __version__}
        if record is not None:
            record = json.loads(dumps_record(record))  # plain JSON values, exactly as they will be read back
            body |= {"status": "ok", "record_sha256": digest(record), "record": record}
        else:
            body |= {"status": "error", "record_sha256": digest(error), "error": error}
        write_atomic(self.entry_path(key), json.dumps(body, ensure_ascii=False, allow_nan=False) + "\n")


def _check(data: Any, key: str) -> str | None:
    """Why an entry cannot be trusted, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("schema") != SCHEMA:
        return f"schema {data.get('schema')!r}, expected {SCHEMA}"
    if data.get("key") != key:
        return "stored under the wrong key"
    if data.get("tool") != __version__:
        return f"written by provaudit {data.get('tool')!r}"
    status = data.get("status")
    if status == "ok":
        record = data.get("record")
        if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
            return "the record is missing or has another schema"
        if digest(record) != data.get("record_sha256"):
            return "the record does not match its SHA-256"
        return None
    if status == "error":
        if not isinstance(data.get("error"), str) or digest(data["error"]) != data.get("record_sha256"):
            return "the error entry does not match its SHA-256"
        return None
    return f"unknown status {status!r}"
