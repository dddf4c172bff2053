"""Assemble a model fingerprint: files and hashes, architecture, tokenizer, weight statistics."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from audit import __version__
from audit.checkpoint.hashing import BackgroundHasher
from audit.checkpoint.model import Checkpoint
from audit.checkpoint.progress import Progress
from audit.fingerprinting.describe import model_info
from audit.fingerprinting.view import ModelView
from audit.fingerprinting.weights import weight_statistics

SCHEMA = "provaudit.fingerprint/1"


def build_fingerprint(ckpt: Checkpoint, argv: list[str] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    hasher = BackgroundHasher(ckpt.files)  # overlaps hashing with reading tensors
    view = ModelView(ckpt)
    if progress:
        progress.start(f"fingerprint {ckpt.name}", len(ckpt.tensors))
    weights = weight_statistics(view, tick=progress.tick if progress else None)
    return {
        "schema": SCHEMA,
        "tool": {"name": "provaudit", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": {"name": "fingerprint", "argv": argv or []},
        "model": model_info(view, hasher.result()).model_dump(mode="json"),
        "weights": weights,
        "seconds": round(time.perf_counter() - t0, 2),
    }
