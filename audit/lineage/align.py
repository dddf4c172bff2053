"""Align the residual (hidden) units of two models before comparing their layers.

Derivers may permute hidden units (function-preserving). We recover the correspondence with a linear
assignment between embedding columns over tokens both vocabularies share (by string); when the
vocabularies share too little, we match hidden units by permutation-invariant weight signatures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from audit.errors import NothingComparable
from audit.fingerprinting.reference import Reference
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

    def summary(self, cand: ModelView, ref: Reference) -> dict:
        return {
            "method": self.method,
            "shared_tokens": self.shared_tokens,
            "matched_units": int(len(self.cand_dims)),
            "hidden_size": [cand.hidden, ref.hidden],
            "fixed_points": self.fixed_points,
            "sign_flips": int((self.signs < 0).sum()),
        }


def _standardize(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0, keepdims=True)
    sd = x.std(axis=0, keepdims=True)
    return x / np.where(sd > 0, sd, 1.0)


def anchor_ids(cand: ModelView, ref: Reference, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (candidate, reference) of up to MAX_ANCHORS tokens both models embed."""
    tc = cand.ckpt.tokenizer
    if tc is not None and ref.tokens is not None:
        ci, ri = shared_token_ids(tc.tokens, ref.tokens)
    elif ref.view is not None and cand.vocab_rows() == ref.vocab_rows:
        ci = ri = list(range(cand.vocab_rows()))
    else:
        ci, ri = [], []
    ci_a, ri_a = np.asarray(ci, dtype=np.int64), np.asarray(ri, dtype=np.int64)
    keep = (ci_a < cand.vocab_rows()) & (ri_a < ref.vocab_rows)
    ci_a, ri_a = ci_a[keep], ri_a[keep]
    if len(ci_a) > MAX_ANCHORS:
        pick = np.sort(np.random.default_rng(seed).choice(len(ci_a), MAX_ANCHORS, replace=False))
        ci_a, ri_a = ci_a[pick], ri_a[pick]
    return ci_a, ri_a


def align_hidden(cand: ModelView, ref: Reference, seed: int = 0) -> Alignment:
    ci, ri = anchor_ids(cand, ref, seed)
    if len(ci) >= MIN_ANCHORS and cand.embed_name() and ref.vocab_rows:
        ec, er = cand.embedding_rows(ci), ref.embedding_rows(ri)
        corr = _standardize(ec).T @ _standardize(er) / len(ci)
        method = "embedding-anchors"
    elif ref.view is not None:
        corr = _signature_similarity(cand, ref.view)
        method = "weight-signatures"
    else:
        raise NothingComparable(
            f"{cand.name} shares only {len(ci)} anchor tokens with the stored fingerprint of {ref.name}; "
            f"at least {MIN_ANCHORS} are needed to align hidden units"
        )
    rows, cols = linear_sum_assignment(-np.abs(corr))
    signs = np.sign(corr[rows, cols]) if method == "embedding-anchors" else np.ones(len(rows))
    signs[signs == 0] = 1
    fixed = int((rows == cols).sum()) if cand.hidden == ref.hidden else None
    order = np.argsort(cols)
    return Alignment(method, rows[order], cols[order], signs[order].astype(np.float32), int(len(ci)), fixed)


def _signature_similarity(cand: ModelView, ref: ModelView) -> np.ndarray:
    """Hidden-unit similarity from per-unit weight norms averaged over layers (invariant to neuron/head order)."""
    sc, sr = _signatures(cand), _signatures(ref)
    roles = sorted(set(sc) & set(sr))
    if not roles:
        return np.zeros((cand.hidden, ref.hidden), dtype=np.float32)
    fc = _standardize(np.stack([sc[r] for r in roles], axis=1))  # (hidden, features), each feature z-scored
    fr = _standardize(np.stack([sr[r] for r in roles], axis=1))
    return fc @ fr.T / len(roles)


def _signatures(view: ModelView) -> dict[str, np.ndarray]:
    """role/side -> mean over layers of log column (or row) norms along the hidden axis."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for layer in view.roles.layers():
        for role, name, sides in view.layer_weights(layer):
            w = view.matrix(name)
            for side in sides:
                norms = np.log(np.linalg.norm(w, axis=0 if side == "in" else 1) + 1e-12)
                key = f"{role}:{side}"
                sums[key] = sums.get(key, 0) + norms
                counts[key] = counts.get(key, 0) + 1
        for role, name in view.layer_norms(layer):
            key = f"{role}:norm"
            sums[key] = sums.get(key, 0) + np.log(np.abs(view.ckpt.read(name)) + 1e-6)
            counts[key] = counts.get(key, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}
