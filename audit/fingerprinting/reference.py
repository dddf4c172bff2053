"""Either side of a comparison: a live checkpoint, or a stored weight fingerprint.

A stored fingerprint (`provaudit.weights/2`, a safetensors file) holds what the lineage statistics need
and nothing from which the model could be rebuilt: embedding rows for anchor tokens (the tokens with the
smallest string hashes, so two vocabularies pick the same strings), and for 128 hidden units the cosine Gram
matrices of each layer's row-readable weights and its norm weights. Half of the units are canonical (the
largest mean norm weights: a permuted copy picks the same units), half seeded at random. Everything in it is
read as whole stored rows, so building one reads ~1% of a 7B model, locally or from the Hub.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import InputError
from audit.fingerprinting.grams import LayerGrams, compute_grams, weight_kinds
from audit.fingerprinting.tokenizer import compare_tokenizers
from audit.fingerprinting.view import ModelView

WEIGHTS_SCHEMA = "provaudit.weights/2"
READABLE_SCHEMAS = ("provaudit.weights/1", WEIGHTS_SCHEMA)
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

    def tokenizer_comparison(self, cand: Reference) -> dict[str, Any] | None:
        """How `cand`'s vocabulary relates to this reference's (exact when both are live checkpoints)."""
        if self.view is not None and cand.view is not None:
            return compare_tokenizers(cand.view.ckpt.tokenizer, self.view.ckpt.tokenizer)
        from audit.fingerprinting.tokenizer_sketch import compare_sketches, compare_to_fingerprint

        if cand.view is not None and self.tokenizer_fp is not None:
            tok = cand.view.ckpt.tokenizer
            if tok is None:
                return None
            row = compare_to_fingerprint(tok, self.tokenizer_fp)
            ref_size, cand_size = int(row.get("vocab_size") or 0), len(tok.tokens)
        elif self.view is not None and cand.tokenizer_fp is not None:
            tok = self.view.ckpt.tokenizer
            if tok is None:
                return None
            row = compare_to_fingerprint(tok, cand.tokenizer_fp)  # directions swap below
            row = {**row, "containment_ref_in_candidate": row["containment_candidate_in_ref"]}
            ref_size, cand_size = len(tok.tokens), int(row.get("vocab_size") or 0)
        elif self.tokenizer_fp is not None and cand.tokenizer_fp is not None:
            row = compare_sketches(cand.tokenizer_fp, self.tokenizer_fp)
            ref_size, cand_size = int(self.tokenizer_fp.get("vocab_size") or 0), int(cand.tokenizer_fp.get("vocab_size") or 0)
        else:
            return None
        shared = int(round(row["containment_ref_in_candidate"] * ref_size))
        return {"jaccard": row["jaccard"], "shared": shared, "candidate_only": max(0, cand_size - shared),
                "reference_only": max(0, ref_size - shared), "identical": row["vocab_identical"],
                "merges_identical": row["merges_identical"], "estimated": not row.get("exact", False)}

    @property
    def units(self) -> np.ndarray | None:
        """The hidden units a stored fingerprint holds Grams for (None: a live checkpoint has all of them)."""
        return self._units

    def kinds(self, columns: bool = False) -> set[str]:
        """The weight kinds ("role:side") this side has Grams for (a checkpoint: row-readable ones, or all)."""
        if self.view is not None:
            return weight_kinds(self.view, columns)
        assert self._grams is not None
        return {key for _, key in self._grams.keys}

    def grams(self, units: np.ndarray, signs: np.ndarray | None = None,
              tick: Callable[[], None] | None = None, columns: bool = False) -> LayerGrams:
        """Gram descriptors over `units`, in that order (stored fingerprints: units must be stored ones)."""
        if self.view is not None:
            return compute_grams(self.view, units, signs, tick, columns)
        assert self._grams is not None and self._units is not None
        pos = {int(u): i for i, u in enumerate(self._units)}
        idx = np.asarray([pos[int(u)] for u in units], dtype=np.int64)
        g = self._grams
        sub = g.grams[:, idx][:, :, idx]
        if signs is not None:
            sub = sub * np.outer(signs, signs)[None, :, :]
        return LayerGrams(g.keys, sub.astype(np.float32), {k: v[:, idx] for k, v in g.norms.items()})


def live_reference(view: ModelView) -> Reference:
    """A checkpoint as a comparison side (row-level checks enabled)."""
    tok = view.ckpt.tokenizer
    return Reference(
        name=view.name, hidden=view.hidden, arch=view.arch, scheme=view.roles.scheme, format=view.ckpt.format,
        storage_dtypes=view.ckpt.storage_dtypes, tensor_names=set(view.ckpt.stored_tensors), layers=view.roles.layers(),
        tokens=tok.tokens if tok else None, vocab_rows=view.vocab_rows(), view=view,
    )


# ---------------------------------------------------------------- stored weight fingerprints


def select_units(view: ModelView, seed: int = 0, k: int = STORED_UNITS) -> np.ndarray:
    """The hidden units a fingerprint keeps: half canonical (largest mean |norm weight| over the blocks, ties broken
    by index: a permuted copy picks the same units), half seeded at random from the rest."""
    hidden = view.hidden
    k = min(k, hidden)
    rng = np.random.default_rng(seed)
    score = np.zeros(hidden, dtype=np.float64)
    count = 0
    for layer in view.roles.layers():
        for _, name in view.layer_norms(layer):
            score += np.abs(view.ckpt.read(name).astype(np.float64))
            count += 1
    if count and np.ptp(score) > 0:
        canonical = np.argsort(-score, kind="stable")[: k // 2]
    else:
        canonical = np.zeros(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(hidden), canonical)
    extra = rng.choice(rest, k - len(canonical), replace=False)
    return np.sort(np.concatenate([canonical, extra]).astype(np.int64))


def anchor_token_ids(view: ModelView, k: int = STORED_ANCHORS) -> np.ndarray:
    """Ids of the k distinct tokens with the smallest string hashes (the same strings in any vocabulary that
    has them); the first `k` ids when the model has no tokenizer."""
    n_vocab = view.vocab_rows()
    tok = view.ckpt.tokenizer
    if tok is None:
        return np.arange(min(k, n_vocab), dtype=np.int64)
    from audit.fingerprinting.tokenizer_sketch import token_hash

    first: dict[str, int] = {}
    for i, t in enumerate(tok.tokens[:n_vocab]):
        if t:
            first.setdefault(t, i)
    ranked = sorted(first.items(), key=lambda item: token_hash(item[0]))[:k]
    return np.sort(np.asarray([i for _, i in ranked], dtype=np.int64))


LAYER0_ROWS = 16  # stored rows of the first block's row-readable weights that the exact-copy checks use
LAYER0_SAMPLE = 4096  # values kept (float32) from those rows, to tell a re-encoded copy from a fine-tune


def layer0_rows(view: ModelView) -> dict[str, np.ndarray]:
    """role -> the first LAYER0_ROWS stored rows (float32) of each row-readable weight of the first block."""
    layers = view.roles.layers()
    if not layers:
        return {}
    out: dict[str, np.ndarray] = {}
    for role, name, _ in view.row_weights(layers[0]):
        rows = int(view.ckpt.tensors[name].shape[0])
        out.setdefault(role, np.ascontiguousarray(view.stored_rows(name, np.arange(min(LAYER0_ROWS, rows))),
                                                  dtype=np.float32))
    return out


def layer0_sample_positions(size: int) -> np.ndarray:
    """Flat positions of the stored sample within the first rows of a first-block weight (fixed seed)."""
    k = min(LAYER0_SAMPLE, size)
    return np.sort(np.random.default_rng(20260101).choice(size, k, replace=False))


def layer0_sample(view: ModelView) -> tuple[str | None, np.ndarray | None]:
    """(role, float32 values at fixed positions of its first rows) of the first block's first row-readable weight."""
    rows = layer0_rows(view)
    if not rows:
        return None, None
    role = sorted(rows)[0]
    flat = rows[role].ravel()
    return role, flat[layer0_sample_positions(flat.size)]


def layer0_hashes(view: ModelView) -> dict[str, str]:
    """SHA-256 of the first rows of the first block's row-readable weights as float32: detects exact copies."""
    import hashlib

    return {role: hashlib.sha256(rows.tobytes()).hexdigest() for role, rows in layer0_rows(view).items()}


def fingerprint_arrays(view: ModelView, meta: dict[str, Any], seed: int = 0,
                       tick: Callable[[], None] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and metadata of `view`'s weight fingerprint (see the module docstring)."""
    units = select_units(view, seed)
    grams = compute_grams(view, units, None, tick)
    tok = view.ckpt.tokenizer
    anchor_ids = anchor_token_ids(view)
    anchor_tokens = [tok.tokens[i] for i in anchor_ids] if tok is not None else [str(i) for i in anchor_ids]
    m = len(units)
    iu = np.triu_indices(m, k=1)
    tensors: dict[str, np.ndarray] = {"units": units.astype(np.int32),
                                      "anchor_rows": view.embedding_rows(anchor_ids).astype(np.float16)}
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
        "layers": view.roles.layers(), "vocab_rows": view.vocab_rows(), "anchor_tokens": anchor_tokens,
        "tensor_names": sorted(view.ckpt.stored_tensors),
        "layer0_sha256": layer0_hashes(view),
        "layer0_sample_role": sample_role,
        "layer0_rows": LAYER0_ROWS,
    }
    if tok is not None and "tokenizer" not in info:
        from audit.fingerprinting.tokenizer_sketch import tokenizer_fingerprint

        info["tokenizer"] = tokenizer_fingerprint(tok, meta.get("name", view.name), meta.get("family", "unknown"),
                                                  {"model": meta.get("name", view.name)})
    return tensors, info


def fingerprint_reference(view: ModelView, meta: dict[str, Any] | None = None, seed: int = 0) -> Reference:
    """`view`'s weight fingerprint in memory, as a comparison side (what a stored file would load as)."""
    tensors, info = fingerprint_arrays(view, {"name": view.name, **(meta or {})}, seed)
    return _reference(tensors, info, view.name)


def build_weight_fingerprint(view: ModelView, path: Path, meta: dict[str, Any], seed: int = 0,
                             tick: Callable[[], None] | None = None) -> Path:
    """Write the compact, shareable weight fingerprint of `view` to `path` (safetensors, atomically)."""
    from safetensors.numpy import save_file

    tensors, info = fingerprint_arrays(view, meta, seed, tick)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata={"provaudit": json.dumps(info, ensure_ascii=False)})
    tmp.replace(path)
    return path


def load_weight_fingerprint(path: Path) -> Reference:
    """Open a stored weight fingerprint as a comparison side. Raises InputError when unusable."""
    from safetensors import safe_open

    from audit.safeio import regular_file

    regular_file(path, "weight fingerprint")  # a FIFO would block the reader
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {}).get("provaudit", "{}"))
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # corrupt file, bad header, bad JSON
        raise InputError(f"{path}: unreadable weight fingerprint ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("schema") not in READABLE_SCHEMAS or "units" not in arrays \
            or "anchor_rows" not in arrays:
        schema = meta.get("schema") if isinstance(meta, dict) else None
        raise InputError(f"{path}: not a provaudit weight fingerprint (schema {schema!r})")
    bad = sorted(k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all())
    if bad:
        raise InputError(f"{path}: corrupt weight fingerprint ({bad[0][:100]!r} holds NaN or Inf values)")
    try:
        return _reference(arrays, meta, path.stem)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise InputError(f"{path}: corrupt weight fingerprint ({type(exc).__name__}: {exc})") from None


def _reference(arrays: dict[str, np.ndarray], meta: dict[str, Any], default_name: str) -> Reference:
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
    grams = LayerGrams([keys[i] for i in order], np.stack([mats[i] for i in order]) if mats
                       else np.zeros((0, m, m), np.float32), norms)
    arch = meta.get("architecture", {})
    current = meta.get("schema") == WEIGHTS_SCHEMA  # /1 sampled whole first-block tensors: not comparable to rows
    return Reference(
        name=meta.get("name", default_name), hidden=int(arch.get("hidden_size") or 0), arch=arch,
        scheme=meta.get("naming_scheme", "unknown"), format=meta.get("format", "unknown"),
        storage_dtypes=meta.get("storage_dtypes", []), tensor_names=set(meta.get("tensor_names", [])),
        layers=[int(x) for x in meta.get("layers", [])], tokens=list(meta.get("anchor_tokens", [])),
        vocab_rows=int(meta.get("vocab_rows", 0)), stored=meta if current else {**meta, "layer0_sha256": {}},
        _units=units, _grams=grams,
        _anchor_rows=arrays["anchor_rows"].astype(np.float32), tokenizer_fp=meta.get("tokenizer"),
        layer0_sample=arrays["layer0_sample"].astype(np.float32) if "layer0_sample" in arrays and current else None,
    )
