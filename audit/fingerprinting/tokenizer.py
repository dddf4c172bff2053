"""Tokenizer fingerprint (hashes, size, specials) and comparison of two vocabularies by token string."""

from __future__ import annotations

import hashlib
from typing import Any

from audit.checkpoint.model import TokenizerData


def tokenizer_summary(tok: TokenizerData | None) -> dict[str, Any] | None:
    if tok is None:
        return None
    return {
        "kind": tok.kind,
        "source": tok.source,
        "vocab_size": len(tok.tokens),
        "vocab_sha256": hashlib.sha256("\n".join(tok.tokens).encode("utf-8", "surrogatepass")).hexdigest(),
        "merges": len(tok.merges),
        "merges_sha256": hashlib.sha256("\n".join(tok.merges).encode("utf-8", "surrogatepass")).hexdigest()
        if tok.merges else None,
        "special": dict(sorted(tok.special.items())[:32]),
    }


def compare_tokenizers(cand: TokenizerData | None, ref: TokenizerData | None) -> dict[str, Any] | None:
    """Overlap of the two vocabularies by token string; None when either side has no tokenizer."""
    if cand is None or ref is None:
        return None
    a, b = set(cand.tokens) - {""}, set(ref.tokens) - {""}
    shared = len(a & b)
    union = len(a | b) or 1
    same_order = cand.tokens[: len(ref.tokens)] == ref.tokens
    return {
        "jaccard": shared / union,
        "shared": shared,
        "candidate_only": len(a - b),
        "reference_only": len(b - a),
        "identical": cand.tokens == ref.tokens,
        "reference_prefix_of_candidate": same_order and len(cand.tokens) > len(ref.tokens),
        "merges_identical": bool(cand.merges) and cand.merges == ref.merges,
    }


def shared_token_ids(cand: list[str], ref: list[str]) -> tuple[list[int], list[int]]:
    """Ids of tokens present in both vocabularies (first occurrence of each string), aligned by string."""
    ref_ids: dict[str, int] = {}
    for i, t in enumerate(ref):
        if t:
            ref_ids.setdefault(t, i)
    cand_ids, refs = [], []
    seen: set[str] = set()
    for i, t in enumerate(cand):
        if t and t in ref_ids and t not in seen:
            seen.add(t)
            cand_ids.append(i)
            refs.append(ref_ids[t])
    return cand_ids, refs
