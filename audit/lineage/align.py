"""Align the residual (hidden) units of two models before comparing their layers.

Derivers may permute hidden units (function-preserving). We recover the correspondence with a linear
assignment between embedding columns over tokens both vocabularies share (by string); when the
vocabularies share too little, we match hidden units by permutation-invariant weight signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from audit.errors import NothingComparable
from audit.fingerprinting.grams import weight_sides
from audit.fingerprinting.reference import Reference, live_reference
from audit.fingerprinting.tokenizer import shared_token_ids
from audit.fingerprinting.view import ModelView

MIN_ANCHORS = 256
MAX_ANCHORS = 4096


@dataclass
class Alignment:
    method: str  # embedding-anchors | weight-signatures
    cand_dims: np.ndarray  # matched candidate hidden units ...
    ref_dims: np.ndarray  # ... and the reference units they correspond to
    signs: np.ndarray  # sign flip of each candidate unit (+1/-1)
    shared_tokens: int
    fixed_points: int | None  # matched pairs (i, i), when both hidden sizes agree

    def summary(self, cand: Reference, ref: Reference) -> dict[str, Any]:
        return {
            "method": self.method,
            "shared_tokens": self.shared_tokens,
            "matched_units": int(len(self.cand_dims)),
            "hidden_size": [cand.hidden, ref.hidden],
            "fixed_points": self.fixed_points,
            "sign_flips": int((self.signs < 0).sum()),
        }


def _standardize(x: np.ndarray) -> np.ndarray:
    """Columns z-scored; NaN entries (units with no finite weights in a feature) become the column mean."""
    if np.isnan(x).any():
        with np.errstate(all="ignore"):
            mean = np.nanmean(x, axis=0, keepdims=True)
        x = np.where(np.isnan(x), np.nan_to_num(mean), x)
    x = x - x.mean(axis=0, keepdims=True)
    sd = x.std(axis=0, keepdims=True)
    return x / np.where(sd > 0, sd, 1.0)


def anchor_ids(cand: Reference, ref: Reference, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-row indices (candidate, reference) of up to MAX_ANCHORS tokens both sides embed."""
    if cand.tokens is not None and ref.tokens is not None:
        ci, ri = shared_token_ids(cand.tokens, ref.tokens)
    elif cand.view is not None and ref.view is not None and cand.vocab_rows == ref.vocab_rows:
        ci = ri = list(range(cand.vocab_rows))
    else:
        ci, ri = [], []
    ci_a, ri_a = np.asarray(ci, dtype=np.int64), np.asarray(ri, dtype=np.int64)
    keep = (ci_a < _embedded_rows(cand)) & (ri_a < _embedded_rows(ref))
    ci_a, ri_a = ci_a[keep], ri_a[keep]
    if len(ci_a) > MAX_ANCHORS:
        pick = np.sort(np.random.default_rng(seed).choice(len(ci_a), MAX_ANCHORS, replace=False))
        ci_a, ri_a = ci_a[pick], ri_a[pick]
    return ci_a, ri_a


def _embedded_rows(side: Reference) -> int:
    """How many embedding rows `side.embedding_rows` can return (the vocabulary, or the stored anchors)."""
    if side.view is not None:
        return side.vocab_rows
    return len(side.tokens or [])


def align_hidden(cand: Reference | ModelView, ref: Reference | ModelView, seed: int = 0) -> Alignment:
    """Match the candidate's hidden units to the reference's (either side a checkpoint or a stored fingerprint)."""
    cand = live_reference(cand) if isinstance(cand, ModelView) else cand
    ref = live_reference(ref) if isinstance(ref, ModelView) else ref
    ci, ri = anchor_ids(cand, ref, seed)
    has_embed = cand.view is None or cand.view.embed_name() is not None
    if len(ci) >= MIN_ANCHORS and has_embed and ref.vocab_rows:
        ec, er = cand.embedding_rows(ci), ref.embedding_rows(ri)
        live = np.any(ec != 0, axis=1) & np.any(er != 0, axis=1)  # NaN/Inf rows were zeroed when read: leave out
        if not live.all() and int(live.sum()) >= MIN_ANCHORS:
            ec, er = ec[live], er[live]
        corr = _standardize(ec).T @ _standardize(er) / len(ec)
        method = "embedding-anchors"
    elif ref.view is not None and cand.view is not None:
        corr = _signature_similarity(cand.view, ref.view)
        method = "weight-signatures"
    else:
        raise NothingComparable(
            f"{cand.name} shares only {len(ci)} anchor tokens with {ref.name}'s stored fingerprint; "
            f"at least {MIN_ANCHORS} are needed to align hidden units"
        )
    rows, cols = linear_sum_assignment(-np.abs(corr))
    signs = np.sign(corr[rows, cols]) if method == "embedding-anchors" else np.ones(len(rows))
    signs[signs == 0] = 1
    fixed = int((rows == cols).sum()) if cand.hidden == ref.hidden else None
    order = np.argsort(cols)
    return Alignment(method, rows[order], cols[order], signs[order].astype(np.float32), int(len(ci)), fixed)


def _signature_similarity(cand: ModelView, ref: ModelView) -> np.ndarray:
    """Hidden-unit similarity from per-unit weight norms averaged over layers (invariant to neuron/head order):
    from whole rows where both storage layouts have the same row-readable kinds, else from every weight."""
    sc, sr = _signatures(cand), _signatures(ref)
    if not {k for k in set(sc) & set(sr) if not k.endswith(":norm")}:
        sc, sr = _signatures(cand, columns=True), _signatures(ref, columns=True)
    roles = sorted(set(sc) & set(sr))
    fc = _standardize(np.stack([sc[r] for r in roles], axis=1)) if roles else None  # (hidden, features) z-scored
    fr = _standardize(np.stack([sr[r] for r in roles], axis=1)) if roles else None
    sim = fc @ fr.T / len(roles) if fc is not None and fr is not None else None
    if sim is None or float(np.ptp(sim)) < 1e-9:  # nothing to tell units apart: any assignment would be arbitrary
        raise NothingComparable(f"{cand.name} and {ref.name} share neither anchor tokens nor per-unit weight "
                                "signatures to align hidden units by")
    return sim


def _signatures(view: ModelView, columns: bool = False) -> dict[str, np.ndarray]:
    """role/side -> mean over layers of the log norms of the hidden units' weights: rows of the row-readable
    weights (read in blocks), or with `columns`, every weight's hidden side (each read whole)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for layer in view.roles.layers():
        for role, name, side in weight_sides(view, layer, columns):
            if (role, name, side) in view.row_weights(layer):
                rows = int(view.ckpt.tensors[name].shape[0])
                step = max(1, (1 << 22) // max(1, int(np.prod(view.ckpt.tensors[name].shape[1:]))))
                norms = np.concatenate([np.linalg.norm(view.ckpt.read_rows(name, slice(i, min(rows, i + step))),
                                                       axis=1) for i in range(0, rows, step)])
            else:
                norms = np.linalg.norm(view.matrix(name), axis=0 if side == "in" else 1)
            _add(sums, counts, f"{role}:{side}", norms, 1e-12)
        for role, name in view.layer_norms(layer):
            _add(sums, counts, f"{role}:norm", np.abs(view.ckpt.read(name)), 1e-6)
    with np.errstate(all="ignore"):
        return {k: np.where(counts[k] > 0, sums[k] / np.maximum(counts[k], 1), np.nan) for k in sums}


def _add(sums: dict[str, np.ndarray], counts: dict[str, np.ndarray], key: str, values: np.ndarray,
         eps: float) -> None:
    """Add log(values + eps) of one layer to a unit signature; exact zeros (rows that were NaN/Inf or zero:
    no evidence) are left out of that unit's mean."""
    ok = values > 0
    logs = np.where(ok, np.log(np.where(ok, values, 1.0) + eps), 0.0)
    sums[key] = sums.get(key, 0) + logs
    counts[key] = counts.get(key, 0) + ok.astype(np.int64)
