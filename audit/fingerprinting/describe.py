"""Describe a model for the record: name, path, format, files with hashes, architecture, tokenizer."""

from __future__ import annotations

from typing import Any

from audit.fingerprinting.reference import Reference
from audit.fingerprinting.tokenizer import tokenizer_summary
from audit.fingerprinting.view import ModelView
from audit.record.models import Architecture, FileDigest, ModelInfo, TokenizerSummary


def model_info(view: ModelView, files: list[dict[str, Any]]) -> ModelInfo:
    """The record's description of an opened checkpoint; `files` are {path, bytes, sha256} rows."""
    tok = tokenizer_summary(view.ckpt.tokenizer)
    return ModelInfo(
        name=view.name, path=str(view.ckpt.path), format=view.ckpt.format,
        files=[FileDigest.model_validate(f) for f in files],
        architecture=Architecture.model_validate(view.arch),
        tokenizer=TokenizerSummary.model_validate(tok) if tok is not None else None,
    )


def stored_info(ref: Reference) -> ModelInfo:
    """The record's description of a stored weight fingerprint (a registry entry)."""
    return ModelInfo(name=ref.name, path=str(ref.stored.get("path", "")), format="weight-fingerprint",
                     family=_text(ref.stored.get("family")), source=_text(ref.stored.get("source")))


def _text(x: Any) -> str | None:
    return None if x is None else str(x)
