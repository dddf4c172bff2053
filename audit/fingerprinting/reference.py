"""The reference side of a comparison: a live checkpoint, or a stored weight fingerprint.

A stored fingerprint (`provaudit.weights/1`, a safetensors file) holds what the lineage statistics need
and nothing from which the model could be rebuilt: embedding rows for a fixed set of anchor tokens, and
for a fixed subset of hidden units the cosine Gram matrices of each layer's weights and its norm weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.checkpoint.model import TokenizerData
from audit.errors import InputError
from audit.fingerprinting.grams import LayerGrams, compute_grams
from audit.fingerprinting.tokenizer import compare_tokenizers
from audit.fingerprinting.view import ModelView

WEIGHTS_SCHEMA = "provaudit.weights/1"
STORED_UNITS = 128
STORED_ANCHORS = 1536


@dataclass
class Reference:
    """Everything compare needs from a reference, however it is held."""

    name: str
    hidden: int
    arch: dict[str, Any]
    scheme: str
    format: str
    storage_dtypes: list[str]
    tensor_names: set[str]
    layers: list[int]
    tokens: list[str] | None  # token strings, by the row index used for embedding_rows
    vocab_rows: int
    view: ModelView | None = None  # a live checkpoint (enables row-level checks)
    stored: dict[str, Any] = field(default_factory=dict)
    _units: np.ndarray | None = None
    _grams: LayerGrams | None = None
    _anchor_rows: np.ndarray | None = None
    tokenizer_fp: dict[str, Any] | None = None
    layer0_sample: np.ndarray | None = None  # stored fingerprints: first-block weight values (layer0_sample)

    def embedding_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.view is not None:
            return self.view.embedding_rows(rows)
        assert self._anchor_rows is not None
        return self._anchor_rows[rows]

    def tokenizer_comparison(self, tok: TokenizerData | None) -> dict[str, Any] | None:
        if self.view is not None:
            return compare_tokenizers(tok, self.view.ckpt.tokenizer)
        if tok is None or self.tokenizer_fp is None:
            return None
        from audit.fingerprinting.tokenizer_sketch import compare_to_fingerprint

        row = compare_to_fingerprint(tok, self.tokenizer_fp)
        ref_size, cand_size = int(row.get("vocab_size") or 0), len(tok.tokens)
        shared = int(round(row["containment_ref_in_candidate"] * ref_size))
        return {"jaccard": row["jaccard"], "shared": shared, "candidate_only": max(0, cand_size - shared),
                "reference_only": max(0, ref_size - shared), "identical": row["vocab_identical"],
                "merges_identical": row["merges_identical"], "estimated": not row.get("exact", False)}

    def select_units(self, matched_ref_dims: np.ndarray, rng: np.random.Generator, m: int) -> np.ndarray:
        """Positions (into matched_ref_dims) of the reference units the Gram descriptors will use."""
        if self._units is None:
            k = min(m, len(matched_ref_dims))
            return np.sort(rng.choice(len(matched_ref_dims), k, replace=False))
        pos = {int(u): i for i, u in enumerate(matched_ref_dims)}
        return np.asarray([pos[int(u)] for u in self._units if int(u) in pos], dtype=np.int64)

    def grams(self, units: np.ndarray, tick: Callable[[], None] | None = None) -> LayerGrams:
        if self.view is not None:
            return compute_grams(self.view, units, None, tick)
        assert self._grams is not None and self._units is not None
        keep = np.isin(self._units, units)
        g = self._grams
        return LayerGrams(g.keys, g.grams[:, keep][:, :, keep], {k: v[:, keep] for k, v in g.norms.items()})


def live_reference(view: ModelView) -> Reference:
    tok = view.ckpt.tokenizer
    return Reference(
        name=view.name, hidden=view.hidden, arch=view.arch, scheme=view.roles.scheme, format=view.ckpt.format,
        storage_dtypes=view.ckpt.storage_dtypes, tensor_names=set(view.ckpt.tensors), layers=view.roles.layers(),
        tokens=tok.tokens if tok else None, vocab_rows=view.vocab_rows(), view=view,
    )


# ---------------------------------------------------------------- stored weight fingerprints


def build_weight_fingerprint(view: ModelView, path: Path, meta: dict[str, Any], seed: int = 0,
                             tick: Callable[[], None] | None = None) -> Path:
    """Write the compact, shareable weight fingerprint of `view` to `path` (safetensors)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    units = np.sort(rng.choice(view.hidden, min(STORED_UNITS, view.hidden), replace=False))
    grams = compute_grams(view, units, None, tick)
    tok = view.ckpt.tokenizer
    n_vocab = view.vocab_rows()
    if tok is not None:
        ids = [i for i, t in enumerate(tok.tokens[:n_vocab]) if t]
        seen: dict[str, int] = {}
        for i in ids:
            seen.setdefault(tok.tokens[i], i)
        ids = sorted(seen.values())
    else:
        ids = list(range(n_vocab))
    pick = np.sort(rng.choice(len(ids), min(STORED_ANCHORS, len(ids)), replace=False))
    anchor_ids = np.asarray(ids)[pick]
    anchor_tokens = [tok.tokens[i] for i in anchor_ids] if tok is not None else [str(i) for i in anchor_ids]
    m = len(units)
    iu = np.triu_indices(m, k=1)
    tensors: dict[str, np.ndarray] = {"units": units.astype(np.int32), "anchor_rows": view.embedding_rows(anchor_ids).astype(np.float16)}
    sample_role, sample = layer0_sample(view)
    if sample is not None:
        tensors["layer0_sample"] = sample
    for (layer, key), g in zip(grams.keys, grams.grams, strict=True):
        tensors[f"gram.{layer}.{key}"] = g[iu].astype(np.float16)
    for layer, nm in grams.norms.items():
        tensors[f"norms.{layer}"] = nm.astype(np.float16)
    info = {
        "schema": WEIGHTS_SCHEMA, **meta,
        "architecture": {k: v for k, v in view.arch.items() if k != "layer_roles"},
        "naming_scheme": view.roles.scheme, "format": view.ckpt.format, "storage_dtypes": view.ckpt.storage_dtypes,
        "layers": view.roles.layers(), "vocab_rows": n_vocab, "anchor_tokens": anchor_tokens,
        "tensor_names": sorted(view.ckpt.tensors),
        "layer0_sha256": layer0_hashes(view),
        "layer0_sample_role": sample_role,
    }
    if tok is not None and "tokenizer" not in info:
        from audit.fingerprinting.tokenizer_sketch import tokenizer_fingerprint

        info["tokenizer"] = tokenizer_fingerprint(tok, meta.get("name", view.name), meta.get("family", "unknown"),
                                                  {"model": meta.get("name", view.name)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata={"provaudit": json.dumps(info, ensure_ascii=False)})
    tmp.replace(path)
    return path


LAYER0_SAMPLE = 4096  # first-block weight values kept (float32) to tell a re-encoded copy from a fine-tune


def layer0_sample_positions(size: int) -> np.ndarray:
    """Flat positions of the stored sample of a first-block weight with `size` entries (fixed seed)."""
    k = min(LAYER0_SAMPLE, size)
    return np.sort(np.random.default_rng(20260101).choice(size, k, replace=False))


def layer0_sample(view: ModelView) -> tuple[str | None, np.ndarray | None]:
    """(role, float32 values at fixed positions) of the first block's first weight by role name."""
    layers = view.roles.layers()
    weights = {role: name for role, name, _ in view.layer_weights(layers[0])} if layers else {}
    if not weights:
        return None, None
    role = sorted(weights)[0]
    flat = np.ascontiguousarray(view.matrix(weights[role]), dtype=np.float32).ravel()
    return role, flat[layer0_sample_positions(flat.size)]


def layer0_hashes(view: ModelView) -> dict[str, str]:
    """SHA-256 of the first block's weights as float32 (unit order as stored): detects exact copies."""
    import hashlib

    first = view.roles.layers()[0]
    return {role: hashlib.sha256(np.ascontiguousarray(view.matrix(name), dtype=np.float32).tobytes()).hexdigest()
            for role, name, _ in view.layer_weights(first)}


def load_weight_fingerprint(path: Path) -> Reference:
    """Open a stored weight fingerprint as a comparison reference. Raises InputError when unusable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {}).get("provaudit", "{}"))
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # corrupt file, bad header, bad JSON
        raise InputError(f"{path}: unreadable weight fingerprint ({type(exc).__name__}: {exc})") from None
    if meta.get("schema") != WEIGHTS_SCHEMA or "units" not in arrays or "anchor_rows" not in arrays:
        raise InputError(f"{path}: not a provaudit weight fingerprint (schema {meta.get('schema')!r})")
    units = arrays["units"].astype(np.int64)
    m = len(units)
    iu = np.triu_indices(m, k=1)
    keys, mats = [], []
    for name, vec in arrays.items():
        if not name.startswith("gram."):
            continue
        _, layer, key = name.split(".", 2)
        g = np.eye(m, dtype=np.float32)
        g[iu] = vec.astype(np.float32)
        g.T[iu] = vec.astype(np.float32)
        keys.append((int(layer), key))
        mats.append(g)
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    norms = {int(n.split(".")[1]): a.astype(np.float32) for n, a in arrays.items() if n.startswith("norms.")}
    grams = LayerGrams([keys[i] for i in order], np.stack([mats[i] for i in order]), norms)
    arch = meta.get("architecture", {})
    return Reference(
        name=meta.get("name", path.stem), hidden=int(arch.get("hidden_size") or 0), arch=arch,
        scheme=meta.get("naming_scheme", "unknown"), format=meta.get("format", "unknown"),
        storage_dtypes=meta.get("storage_dtypes", []), tensor_names=set(meta.get("tensor_names", [])),
        layers=[int(x) for x in meta.get("layers", [])], tokens=list(meta.get("anchor_tokens", [])),
        vocab_rows=int(meta.get("vocab_rows", 0)), stored=meta, _units=units, _grams=grams,
        _anchor_rows=arrays["anchor_rows"].astype(np.float32), tokenizer_fp=meta.get("tokenizer"),
        layer0_sample=arrays["layer0_sample"].astype(np.float32) if "layer0_sample" in arrays else None,
    )
