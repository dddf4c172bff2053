"""Is the candidate a merge of two or more parents, and what did each contribute?

Reads rows only: for every candidate block, the rows of its row-readable weights (o/down projections in a
Llama layout) at a sample of hidden units, and the same rows of each parent at the aligned units and paired
layer. Per layer:

- a least-squares fit of the candidate's rows on the parents' rows gives each parent's mixing weight and the
  residual a weighted average cannot explain (a linear or SLERP merge of fine-tunes of one base leaves only
  the float rounding; a fine-tune leaves its own update, as large as its distance to the nearest parent);
- the share of elements equal to exactly one parent's (TIES keeps, per element, the task vectors that agree
  with the elected sign: where one parent's was trimmed the merge holds the other parent's value exactly);
- whether the layer is a copy of one parent (passthrough / frankenmerge: whole layers taken from each).

mergekit's SLERP falls back to linear interpolation when the parents' tensors are nearly parallel (cosine above
0.9995), as fine-tunes of one base usually are; there SLERP and linear merges are the same weights and are
reported as linear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from audit.errors import NothingComparable
from audit.fingerprinting.view import ModelView, unique_names
from audit.lineage.align import align_hidden
from audit.lineage.compare import Comparison, ranges_text

MERGE_UNITS = 64  # hidden units sampled per layer (rows of each row-readable weight)
COPY_TOL = 1e-5  # relative row difference beyond the storage rounding under which a layer copies a parent
ROUNDING_SLACK = 1.1  # a copy's squared difference may exceed the expected rounding by this factor (n ~ 1e5 rows
# elements: the sum of squared roundings fluctuates by well under 1%)
MANTISSA_BITS = {"F16": 10, "FLOAT16": 10, "BF16": 7, "BFLOAT16": 7}  # explicit mantissa bits (float32: 23)
MAX_RESIDUAL = 0.3  # weight merge: median per-layer residual / distance to the nearest parent, at most
# (measured on SmolLM2: merges of float32 parents leave ~1e-5, in BF16 ~0; fine-tunes and a base of the parents
# 0.99-1: their own update is orthogonal to everything the parents span)
MIN_WEIGHT = 0.05  # a parent with a smaller mean mixing weight is not named
TIES_SIDED = 0.2  # ties-like: at least this share of elements equal one parent exactly (linear merges: ~0)
PASSTHROUGH_COPIED = 0.9  # passthrough: at least this share of compared layers are copies of one parent
PARALLEL = 0.9995  # mergekit's SLERP interpolates linearly above this cosine


@dataclass(frozen=True)
class MergeFinding:
    """A merge and its parents. `parents` holds (name, value): the mean mixing weight over layers for linear
    merges; (1 - t, t) for slerp-like ones; for ties-like ones each parent's share of the weights that equal
    exactly one parent (not the recipe's weights: the parent with the larger updates wins more sign elections);
    for passthrough the share of the candidate's layers copied from it (`layers` lists them)."""

    kind: str  # linear | slerp-like | ties-like | passthrough
    parents: list[tuple[str, float]]
    detail: str
    spread: dict[str, float] = field(default_factory=dict)  # sd over layers of each parent's mixing weight
    layers: dict[str, list[int]] = field(default_factory=dict)  # passthrough: candidate layers from each parent
    residual: float = 0.0  # median relative residual of the per-layer fit
    layers_compared: int = 0


@dataclass
class _Layer:
    layer: int
    parents: list[int]  # indices of the parents that took part
    weights: np.ndarray  # least-squares mixing weight per taking part parent
    residual: float  # |c - fit| / min_i |c - P_i|
    copy_of: int | None  # parent index this layer copies
    sided: np.ndarray  # share of (differing) elements equal to each taking-part parent exactly
    cosine: float  # cosine between the first two parents' rows


def find_merge(cand: ModelView, parents: list[tuple[ModelView, Comparison | None]],
               seed: int = 0) -> MergeFinding | None:
    """Decide whether `cand` is a merge of two or more of `parents` (each a view with, optionally, its
    comparison with the candidate); None when it is not (or too little could be compared)."""
    if len(parents) < 2:
        return None
    views = [v for v, _ in parents]
    names = unique_names([v.name for v in views])
    rng = np.random.default_rng(seed)
    maps = [_unit_map(cand, v, c, seed) for v, c in parents]
    aligned = [m[0] >= 0 for m in maps if (m[0] >= 0).any()]  # parents that could not be aligned take no part
    common = np.flatnonzero(np.all(aligned, axis=0)) if aligned else np.zeros(0, np.int64)
    if len(common) < 8:
        return None
    dims = np.sort(rng.choice(common, min(MERGE_UNITS, len(common)), replace=False))
    bits = min([23] + [MANTISSA_BITS.get(d.upper(), 23) for d in _dtypes(cand)])
    layers = []
    for layer in cand.roles.layers():
        got = _layer(cand, views, [c for _, c in parents], maps, dims, layer, bits)
        if got is not None:
            layers.append(got)
    if not layers:
        return None
    return _passthrough(cand, names, layers) or _weight_merge(names, layers)


def _passthrough(cand: ModelView, names: list[str], layers: list[_Layer]) -> MergeFinding | None:
    copied = [x for x in layers if x.copy_of is not None]
    sources = {x.copy_of for x in copied}
    if len(sources) < 2 or len(copied) < PASSTHROUGH_COPIED * len(layers):
        return None
    total = len(cand.roles.layers())
    by_parent = {names[i]: sorted(x.layer for x in copied if x.copy_of == i) for i in sorted(s for s in sources if s is not None)}
    shares = [(n, round(len(ls) / total, 4)) for n, ls in by_parent.items()]
    parts = "; ".join(f"{n}: layers {ranges_text(ls)} ({len(ls)} of {total})" for n, ls in by_parent.items())
    return MergeFinding(
        kind="passthrough", parents=shares, layers=by_parent, layers_compared=len(layers),
        detail=f"layers copied from {len(by_parent)} parents (passthrough / frankenmerge): {parts}")


def _weight_merge(names: list[str], layers: list[_Layer]) -> MergeFinding | None:
    mixed = [x for x in layers if len(x.parents) >= 2 and x.copy_of is None]
    if len(mixed) < max(1, len(layers) // 2):
        return None
    k = len(names)
    w = np.full((len(mixed), k), np.nan)
    sided = np.full((len(mixed), k), np.nan)
    for r, x in enumerate(mixed):
        w[r, x.parents] = x.weights
        sided[r, x.parents] = x.sided
    residual = float(np.median([x.residual for x in mixed]))
    mean_w, sd_w = np.nanmean(w, axis=0), np.nanstd(w, axis=0)
    mean_sided = np.nanmean(sided, axis=0)
    n = len(mixed)
    if float(np.nansum(mean_sided)) >= TIES_SIDED:
        named = [i for i in range(k) if mean_sided[i] >= MIN_WEIGHT * float(np.nansum(mean_sided))]
        if len(named) < 2:
            return None
        total = float(sum(mean_sided[i] for i in named))
        share = [(names[i], round(float(mean_sided[i]) / total, 4)) for i in named]
        return MergeFinding(
            kind="ties-like", parents=share, residual=round(residual, 4), layers_compared=n,
            spread={names[i]: round(float(sd_w[i]), 4) for i in named},
            detail=f"{float(np.nansum(mean_sided)):.0%} of the compared weights equal exactly one parent's "
                   f"(a sign-elected, trimmed merge such as TIES): "
                   + ", ".join(f"{nm} {s:.0%}" for nm, s in share) + f" of them, over {n} layers")
    if residual > MAX_RESIDUAL:
        return None
    named = [i for i in range(k) if abs(mean_w[i]) >= MIN_WEIGHT]
    if len(named) < 2:
        return None
    kind, how = _linear_or_slerp(mixed, w)
    if kind == "slerp-like":  # SLERP's coefficients sum to more than 1: report the interpolation point
        sums = np.nansum(w, axis=1, keepdims=True)
        w = w / np.where(sums == 0, 1.0, sums)
        mean_w, sd_w = np.nanmean(w, axis=0), np.nanstd(w, axis=0)
    weights = [(names[i], round(float(mean_w[i]), 4)) for i in named]
    spread = {names[i]: round(float(sd_w[i]), 4) for i in named}
    shown = ", ".join(f"{nm} {wt:.2f} (sd {spread[nm]:.2f})" for nm, wt in weights)
    return MergeFinding(
        kind=kind, parents=weights, spread=spread, residual=round(residual, 4), layers_compared=n,
        detail=f"each layer is a weighted average of the parents' weights ({how}): {shown}; the fit leaves "
               f"{residual:.1%} of the distance to the nearest parent unexplained (median over {n} layers)")


def _linear_or_slerp(mixed: list[_Layer], w: np.ndarray) -> tuple[str, str]:
    """SLERP's coefficients sum to more than 1 by an amount the parents' angle fixes; linear ones sum to 1."""
    two = [r for r, x in enumerate(mixed) if len(x.parents) == 2]
    cos = np.array([mixed[r].cosine for r in two])
    if not two or float(np.median(cos)) > PARALLEL:
        return "linear", "linear, or SLERP between nearly parallel parents, which is the same"
    sums = np.nansum(w[two], axis=1)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    t = np.clip(np.nan_to_num(w[two][:, 1] / np.where(sums == 0, 1, sums)), 0.0, 1.0)
    predicted = (np.sin((1 - t) * theta) + np.sin(t * theta)) / np.maximum(np.sin(theta), 1e-12)
    excess, expected = float(np.mean(sums - 1)), float(np.mean(predicted - 1))
    if expected > 1e-3 and abs(excess - expected) < 0.5 * expected:
        return "slerp-like", f"spherical: the weights sum to {1 + excess:.3f}, as SLERP at this angle gives"
    return "linear", f"linear: the weights sum to {1 + excess:.3f}"


def _layer(cand: ModelView, views: list[ModelView], cmps: list[Comparison | None],
           maps: list[tuple[np.ndarray, np.ndarray]], dims: np.ndarray, layer: int, bits: int = 23) -> _Layer | None:
    weights = {role: name for role, name, _ in cand.row_weights(layer)}
    if not weights:
        return None
    c_parts: list[np.ndarray] = []
    p_parts: list[list[np.ndarray]] = [[] for _ in views]
    ok = [True] * len(views)
    paired = [_paired_layer(v, cm, layer) for v, cm in zip(views, cmps, strict=True)]
    for role, name in sorted(weights.items()):
        c_parts.append(cand.hidden_rows(name, dims).ravel())
        for i, (v, pl) in enumerate(zip(views, paired, strict=True)):
            if not ok[i] or pl is None or (maps[i][0][dims] < 0).any():
                ok[i] = False
                continue
            pw = {r: n for r, n, _ in v.row_weights(pl)}
            if role not in pw or v.oriented_shape(pw[role])[1:] != cand.oriented_shape(name)[1:]:
                ok[i] = False
                continue
            ref_dims, signs = maps[i][0][dims], maps[i][1][dims]
            p_parts[i].append((v.hidden_rows(pw[role], ref_dims) * signs[:, None]).ravel())
    taking = [i for i in range(len(views)) if ok[i]]
    if not taking:
        return None
    c = np.concatenate(c_parts).astype(np.float64)
    ps = np.stack([np.concatenate(p_parts[i]).astype(np.float64) for i in taking])  # (parents, elements)
    cn = float(np.linalg.norm(c)) or 1.0
    diff = ps - c
    # the candidate's own storage rounds every weight by up to half a unit in the last place: that much of any
    # difference (its expected size under uniform rounding, `noise2`) is no evidence either way
    half = np.ldexp(0.5, np.frexp(c)[1] - 1 - bits)
    noise2 = float(np.sum(half * half)) / 3.0
    dist2 = np.einsum("ij,ij->i", diff, diff)
    limit2 = ROUNDING_SLACK * noise2 + (COPY_TOL * cn) ** 2
    copy_of = taking[int(np.argmin(dist2))] if float(dist2.min()) <= limit2 else None
    if copy_of is None:
        copy_of = _unaligned_copy(cand, views, paired, maps, dims, weights, taking, c, limit2)
    # least squares through the parents' small Gram matrix, centred on the first parent: the columns of
    # fine-tunes of one base are nearly parallel, their differences are not
    d = ps[1:] - ps[0]
    w = np.zeros(len(taking))
    if len(taking) >= 2:
        rest, *_ = np.linalg.lstsq(d @ d.T, d @ (c - ps[0]), rcond=None)
        w[1:] = rest
        w[0] = 1.0 - float(rest.sum())
        # the scale the parents' weights may share (SLERP: coefficients summing to more than 1), fitted on the
        # remainder along the first parent
        fit = ps[0] + rest @ d
        scale = float(fit @ c) / (float(fit @ fit) or 1.0)
        w *= scale
        res = float(np.linalg.norm(c - scale * fit))
    else:
        w[0] = float(ps[0] @ c) / (float(ps[0] @ ps[0]) or 1.0)
        res = float(np.linalg.norm(c - w[0] * ps[0]))
    res = math.sqrt(max(0.0, res * res - noise2))
    nearest = math.sqrt(max(0.0, float(dist2.min()) - noise2))
    residual = res / nearest if nearest > 0 else 0.0
    sided = np.zeros(len(taking))
    cosine = 1.0
    if len(taking) >= 2:
        gap = ps.max(axis=0) - ps.min(axis=0)
        differ = (gap > 1e-6 * (cn / math.sqrt(len(c)))) & (gap > 4 * half)  # rounding cannot reach both ends
        if differ.any():
            close = np.abs(diff[:, differ]) <= np.maximum(1e-3 * gap[differ], 1.0001 * half[differ])
            only = close & (close.sum(axis=0, keepdims=True) == 1)
            sided = only.mean(axis=1)
        a, b = ps[0], ps[1]
        cosine = float(a @ b / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))
    return _Layer(layer, taking, w, residual, copy_of, sided, cosine)


def _unaligned_copy(cand: ModelView, views: list[ModelView], paired: list[int | None],
                    maps: list[tuple[np.ndarray, np.ndarray]], dims: np.ndarray, weights: dict[str, str],
                    taking: list[int], c: np.ndarray, limit2: float) -> int | None:
    """A parent whose layer the candidate holds at the same hidden units although the alignment (made from the
    embeddings, which a passthrough merge takes from one parent only) maps them elsewhere."""
    for i in taking:
        if np.array_equal(maps[i][0][dims], dims) and not (maps[i][1][dims] < 0).any():
            continue  # already compared in place
        layer = paired[i]
        pw = {r: n for r, n, _ in views[i].row_weights(layer)} if layer is not None else {}
        if views[i].hidden != cand.hidden or any(r not in pw for r in weights):
            continue
        rows = np.concatenate([views[i].hidden_rows(pw[r], dims).ravel() for r in sorted(weights)])
        if rows.size == c.size and float(np.sum(np.square(rows.astype(np.float64) - c))) <= limit2:
            return i
    return None


def _paired_layer(view: ModelView, cmp: Comparison | None, layer: int) -> int | None:
    """The parent layer compared with candidate `layer`: its match in the comparison's layer map, else the same
    index when the parent has it."""
    if cmp is not None:
        match = next((r for c, r, _, _ in cmp.layer_map if c == layer), None)
        if match is not None:
            return int(match)
    return layer if layer in view.roles.layers() else None


def _unit_map(cand: ModelView, parent: ModelView, cmp: Comparison | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate hidden unit, the parent unit it aligns with (-1: none) and its sign. Identity when the
    comparison found every unit in place (fine-tunes of one base); else the hidden-unit alignment."""
    h = cand.hidden
    al = cmp.alignment if cmp is not None else {}
    if (parent.hidden == h and al.get("fixed_points") == h and al.get("matched_units") == h
            and not al.get("sign_flips")):
        return np.arange(h), np.ones(h, np.float32)
    units = np.full(h, -1, np.int64)
    signs = np.ones(h, np.float32)
    try:
        align = align_hidden(cand, parent, seed)
    except NothingComparable:  # no unit lines up: this parent takes part in no layer
        return units, signs
    units[align.cand_dims] = align.ref_dims
    signs[align.cand_dims] = align.signs
    return units, signs


def _dtypes(view: ModelView) -> set[str]:
    return set(view.ckpt.storage_dtypes)
