"""Assemble a model fingerprint: files and hashes, architecture, tokenizer, weight statistics."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from audit import __version__
from audit.checkpoint.hashing import BackgroundHasher, file_row, file_size, is_remote
from audit.checkpoint.model import Checkpoint
from audit.checkpoint.progress import Progress
from audit.fingerprinting.describe import model_info
from audit.fingerprinting.view import ModelView
from audit.fingerprinting.weights import weight_statistics

SCHEMA = "provaudit.fingerprint/1"


HASH_BY_DEFAULT_BYTES = 2 << 30  # files hashed unless asked not to when the model is at most this big


def build_fingerprint(ckpt: Checkpoint, argv: list[str] | None = None, progress: Progress | None = None,
                      hash_files: bool | None = None) -> dict[str, Any]:
    """Architecture, tokenizer and per-tensor statistics from sampled rows; file SHA-256s when `hash_files`
    (default: for models up to 2 GiB, where hashing costs seconds; a 7B model's hash is a full read)."""
    t0 = time.perf_counter()
    if hash_files is None:
        hash_files = sum(file_size(f) for f in ckpt.files) <= HASH_BY_DEFAULT_BYTES
    hasher = BackgroundHasher(ckpt.files) if hash_files else None  # overlaps hashing with reading rows
    view = ModelView(ckpt)
    if progress:
        progress.start(f"fingerprint {ckpt.name}", len(ckpt.stored_tensors))
    weights = weight_statistics(view, tick=progress.tick if progress else None)
    info = model_info(view, hasher.result() if hasher else _unhashed(ckpt))
    if ckpt.io is not None:
        info = info.model_copy(update={"io": ckpt.io.to_record()})
    return {
        "schema": SCHEMA,
        "tool": {"name": "provaudit", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": {"name": "fingerprint", "argv": argv or []},
        "model": info.model_dump(mode="json"),
        "weights": weights,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _unhashed(ckpt: Checkpoint) -> list[dict[str, Any]]:
    """File rows without reading the files: sizes, and SHA-256s only where already known (Hub LFS digests)."""
    return [file_row(f) if is_remote(f)
            else {"path": str(f), "bytes": file_size(f), "sha256": None} for f in ckpt.files]
