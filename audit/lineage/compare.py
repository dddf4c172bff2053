"""Compare one candidate with one reference: alignment, per-layer similarity, nulls, layer map, operations."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm

from audit.checkpoint.progress import Progress
from audit.errors import NothingComparable
from audit.fingerprinting.architecture import same_architecture
from audit.fingerprinting.grams import LayerGrams, compute_grams, descriptors
from audit.fingerprinting.reference import Reference, live_reference
from audit.fingerprinting.view import ModelView
from audit.lineage.align import Alignment, align_hidden
from audit.lineage.stats import (
    LOG10E,
    MIN_LOG10_P,
    Statistic,
    corr,
    gaussian_log10_p,
    poisson_fixed_points_log10_p,
)
from audit.record.models import Alignment as RecordAlignment
from audit.record.models import Comparison as RecordComparison
from audit.record.models import DetectedOperation, Null, TokenizerComparison, Verdict
from audit.record.names import Operation, StatisticName

MAX_UNITS = 256  # hidden units kept for the Gram descriptors
N_PERM = 24  # permutations of hidden units for the layer-similarity null
LAYER_ALPHA = 1e-3  # per-layer significance (Bonferroni over reference layers) to call a layer matched
# ... and the similarity a matched layer must reach. Unrelated real models score ~0.004 (SmolLM2-135M vs
# Gemma-3-270M); tiny 64-unit test models occasionally reach 0.04 by chance; fine-tuned copies score > 0.9.
EFFECT_FLOOR = 0.2
GGUF_QUANT_PREFIXES = ("Q", "IQ", "TQ", "I8", "I16", "I32")


@dataclass
class Comparison:
    reference: str
    statistics: list[Statistic]
    layer_map: list[tuple[int, int | None, float, float]]  # cand layer, ref layer, similarity, log10 p
    layer_null: tuple[float, float, int]
    similarity: np.ndarray
    alignment: dict[str, Any]
    tokenizer: dict[str, Any] | None
    architecture_match: bool
    operations: list[DetectedOperation] = field(default_factory=list)
    global_log10_p: float = 0.0
    mean_best_similarity: float = 0.0
    matched_fraction: float = 0.0
    layers_compared: int = 0
    seconds: float = 0.0

    def stat(self, name: StatisticName) -> Statistic | None:
        return next((s for s in self.statistics if s.name == name), None)

    def to_record(self, verdict: Verdict, reference_layers: int) -> RecordComparison:
        """The record's section for this comparison, with the verdict judged from it."""
        mu, sd, n = self.layer_null
        return RecordComparison(
            reference=self.reference,
            statistics=[s.to_record() for s in self.statistics],
            layer_map=[(c, r, round(s, 4)) for c, r, s, _ in self.layer_map],
            layer_log10_p=[round(p, 2) for _, _, _, p in self.layer_map],
            layer_null=Null(mean=round(mu, 6), sd=round(sd, 6), n=n, kind="random permutation of hidden units"),
            reference_layers=reference_layers,
            alignment=RecordAlignment.model_validate(self.alignment),
            tokenizer=TokenizerComparison.model_validate(self.tokenizer) if self.tokenizer else None,
            architecture_match=self.architecture_match,
            operations=self.operations,
            verdict=verdict,
            seconds=round(self.seconds, 2),
        )


def compare_views(cand: ModelView, ref: ModelView | Reference, seed: int = 0,
                  progress: Progress | None = None) -> Comparison:
    """Run the full white-box comparison of `cand` against `ref` (a checkpoint or a stored fingerprint)."""
    t0 = time.perf_counter()
    if isinstance(ref, ModelView):
        ref = live_reference(ref)
    if not cand.roles.layers() or not ref.layers or not cand.hidden or not ref.hidden:
        raise NothingComparable(
            f"{cand.name} and {ref.name} have nothing comparable: no transformer blocks found "
            f"({len(cand.roles.layers())} vs {len(ref.layers)} layers)"
        )
    rng = np.random.default_rng(seed)
    align = align_hidden(cand, ref, seed)
    pick = ref.select_units(align.ref_dims, rng, MAX_UNITS)
    m = len(pick)
    if m < 8:
        raise NothingComparable(f"{cand.name} and {ref.name} have nothing comparable: fewer than 8 hidden units align")
    tick = progress.tick if progress else None
    gc = compute_grams(cand, align.cand_dims[pick], align.signs[pick], tick)
    gr = ref.grams(align.ref_dims[pick], tick)
    if not len(gc.keys) or not len(gr.keys):
        raise NothingComparable(f"{cand.name} and {ref.name} have nothing comparable: no hidden-space weights")
    by_role = cand.roles.scheme != "structural" and ref.scheme != "structural"
    dc = descriptors(gc.grams)
    sim = _layer_similarity(dc, gc, descriptors(gr.grams), gr, by_role)
    if np.isnan(sim).all():
        raise NothingComparable(f"{cand.name} and {ref.name} have nothing comparable: no layer shares a weight kind")
    # a candidate layer with no kind in common with any reference layer can never match: score it -1
    sim = np.where(np.isnan(sim), -1.0, sim)

    null_vals, null_best = [], []
    for _ in range(N_PERM):
        s_perm = _layer_similarity(dc, gc, descriptors(gr.grams, rng.permutation(m)), gr, by_role)
        null_vals.append(s_perm[~np.isnan(s_perm)])
        null_best.append(float(np.where(np.isnan(s_perm), -1.0, s_perm).max(axis=1).mean()))
    pooled = np.concatenate(null_vals)
    mu0, sd0 = float(pooled.mean()), max(float(pooled.std()), 1e-6)

    cl, rl = gc.layers(), gr.layers()
    best_j = np.argmax(sim, axis=1)
    best = sim[np.arange(len(cl)), best_j]
    layer_log10 = np.clip(norm.logsf((best - mu0) / sd0) * LOG10E + math.log10(len(rl)), MIN_LOG10_P, 0.0)
    matched = (layer_log10 < math.log10(LAYER_ALPHA)) & (best >= EFFECT_FLOOR)
    layer_map = [(cl[i], rl[best_j[i]] if matched[i] else None, float(best[i]), float(layer_log10[i]))
                 for i in range(len(cl))]

    T = float(best.mean())
    log10_p, nmean, nsd = gaussian_log10_p(T, np.asarray(null_best))
    stats = [Statistic(StatisticName.LAYER_GRAM_SIMILARITY, T, nmean, nsd, N_PERM,
                       "random permutation of hidden units", log10_p)]
    stats.append(_fixed_point_stat(align))
    norm_stat = _norm_stat(gc, gr, layer_map, rng)
    if norm_stat:
        stats.append(norm_stat)

    cmp = Comparison(
        reference=ref.name, statistics=stats, layer_map=layer_map, layer_null=(mu0, sd0, len(pooled)),
        similarity=sim, alignment=align.summary(cand, ref),
        tokenizer=ref.tokenizer_comparison(cand.ckpt.tokenizer),
        architecture_match=same_architecture(cand.arch, ref.arch),
        global_log10_p=log10_p, mean_best_similarity=T, matched_fraction=float(matched.mean()),
        layers_compared=len(cl),
    )
    if cmp.matched_fraction > 0:
        cmp.operations = detect_operations(cand, ref, cmp, align)
    cmp.seconds = time.perf_counter() - t0
    return cmp


def _layer_similarity(dc: np.ndarray, gc: LayerGrams, dr: np.ndarray, gr: LayerGrams, by_role: bool) -> np.ndarray:
    """S[i, j]: similarity of candidate layer i and reference layer j (mean correlation of same-kind descriptors).

    When either side's roles come from the structural fallback (unknown names), the correspondence of
    descriptor kinds is itself found by a linear assignment; the permutation null repeats that step.
    """
    r = dc @ dr.T / dc.shape[1]
    keys_c = [key for _, key in gc.keys]
    if not by_role:
        mapping = _match_kinds(r, gc.keys, gr.keys)
        keys_c = [mapping.get(key, "unmatched:" + key) for key in keys_c]
    cl, rl = gc.layers(), gr.layers()
    ci = {lay: i for i, lay in enumerate(cl)}
    ri = {lay: j for j, lay in enumerate(rl)}
    acc = np.zeros((len(cl), len(rl)), dtype=np.float64)
    cnt = np.zeros_like(acc)
    for kind in sorted(set(keys_c) & {key for _, key in gr.keys}):
        ic = [(ci[lay], k) for k, ((lay, _), key) in enumerate(zip(gc.keys, keys_c, strict=True)) if key == kind]
        ir = [(ri[lay], k) for k, (lay, key) in enumerate(gr.keys) if key == kind]
        li, kc = zip(*ic, strict=True)
        lj, kr = zip(*ir, strict=True)
        acc[np.ix_(li, lj)] += r[np.ix_(kc, kr)]
        cnt[np.ix_(li, lj)] += 1
    return np.clip(np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan), -1.0, 1.0)


def _match_kinds(r: np.ndarray, keys_c: list[tuple[int, str]], keys_r: list[tuple[int, str]]) -> dict[str, str]:
    """Pair candidate descriptor kinds with reference kinds: each candidate kind's rows are scored by their
    best reference row of each kind, averaged over layers; one assignment over kinds picks the pairing."""
    kinds_c = sorted({k for _, k in keys_c})
    kinds_r = sorted({k for _, k in keys_r})
    score = np.zeros((len(kinds_c), len(kinds_r)))
    for a, kc in enumerate(kinds_c):
        rows = [i for i, (_, k) in enumerate(keys_c) if k == kc]
        for b, kr in enumerate(kinds_r):
            cols = [j for j, (_, k) in enumerate(keys_r) if k == kr]
            score[a, b] = r[np.ix_(rows, cols)].max(axis=1).mean()
    a_idx, b_idx = linear_sum_assignment(-score)
    return {kinds_c[a]: kinds_r[b] for a, b in zip(a_idx, b_idx, strict=True)}


def _fixed_point_stat(align: Alignment) -> Statistic:
    n = len(align.cand_dims)
    fixed = align.fixed_points if align.fixed_points is not None else 0
    return Statistic(
        StatisticName.HIDDEN_ALIGNMENT_IDENTITY, float(fixed), 1.0, 1.0, n,
        "uniformly random permutation (Poisson(1) fixed points)", poisson_fixed_points_log10_p(fixed),
        f"{fixed} of {n} hidden units align with the same index",
    )


def _norm_stat(gc: LayerGrams, gr: LayerGrams, layer_map: list[tuple[int, int | None, float, float]],
               rng: np.random.Generator) -> Statistic | None:
    """Centred correlation of norm weights of matched layers, against a unit-shuffle null.

    Raw cosines of LayerNorm/RMSNorm weights are ~0.9+ between unrelated models (all near 1): we centre.
    """
    a, b = [], []
    for c_layer, r_layer, _, _ in layer_map:
        if r_layer is None or c_layer not in gc.norms or r_layer not in gr.norms:
            continue
        nc, nr = gc.norms[c_layer], gr.norms[r_layer]
        k = min(len(nc), len(nr))
        a.append((nc[:k] - nc[:k].mean(axis=1, keepdims=True)).ravel())
        b.append((nr[:k] - nr[:k].mean(axis=1, keepdims=True)).ravel())
    if not a:
        return None
    va, vb = np.concatenate(a), np.concatenate(b)
    value = corr(va, vb)
    m = gc.norms[next(iter(gc.norms))].shape[1]
    null = []
    for _ in range(200):
        p = rng.permutation(m)
        vbp = np.concatenate([x.reshape(-1, m)[:, p].ravel() for x in b])
        null.append(corr(va, vbp))
    log10_p, mean, sd = gaussian_log10_p(value, np.asarray(null))
    return Statistic(StatisticName.NORM_WEIGHTS_CENTRED, value, mean, sd, 200, "random permutation of hidden units",
                     log10_p)


def detect_operations(cand: ModelView, ref: Reference, cmp: Comparison, align: Alignment) -> list[DetectedOperation]:
    """Name what the deriver did: repackaging, permutation, pruning, vocabulary extension, quantization."""
    ops: list[DetectedOperation] = []
    fc, fr = cand.ckpt.format, ref.format
    converted = (fc == "gguf") != (fr == "gguf")
    if converted:
        ops.append(_op(Operation.FORMAT_CONVERSION, f"{fr} -> {fc}"))
    mt_c, mt_r = cand.arch.get("model_type"), ref.arch.get("model_type")
    if cand.roles.scheme == "structural":
        ops.append(_op(Operation.RENAMED_TENSORS, f"tensor names follow no known scheme (reference: {ref.scheme})"))
    elif not converted and (cand.roles.scheme != ref.scheme or _name_patterns(set(cand.ckpt.tensors)) != _name_patterns(ref.tensor_names)):
        extra = _name_patterns(set(cand.ckpt.tensors)) - _name_patterns(ref.tensor_names)
        ops.append(_op(Operation.RENAMED_TENSORS, f"naming scheme {ref.scheme} -> {cand.roles.scheme}; "
                                                  f"{len(extra)} tensor name patterns not in the reference"))
    if mt_c != mt_r and mt_r and not any(o.name == Operation.RENAMED_TENSORS for o in ops):
        ops.append(_op(Operation.RENAMED_TENSORS, f"model_type {mt_r!r} -> {mt_c!r}"))
    qc = [d for d in cand.ckpt.storage_dtypes if d.startswith(GGUF_QUANT_PREFIXES) or d in ("int8", "uint8", "I8", "U8")]
    qr = [d for d in ref.storage_dtypes if d.startswith(GGUF_QUANT_PREFIXES) or d in ("int8", "uint8", "I8", "U8")]
    if qc and set(qc) != set(qr):
        ops.append(_op(Operation.QUANTIZATION, f"{', '.join(qc)} weights"))
    float_c = {d.upper() for d in cand.ckpt.storage_dtypes} - {d.upper() for d in qc}
    float_r = {d.upper() for d in ref.storage_dtypes} - {d.upper() for d in qr}
    if float_c and float_r and _float_kinds(float_c) != _float_kinds(float_r) and not qc:
        ops.append(_op(Operation.DTYPE_CONVERSION, f"{'/'.join(sorted(float_r))} -> {'/'.join(sorted(float_c))}"))

    matched = [(c, r) for c, r, _, _ in cmp.layer_map if r is not None]
    ref_layers = sorted(ref.layers)
    used = Counter(r for _, r in matched)
    missing = [lay for lay in ref_layers if lay not in used]
    dup = sorted(lay for lay, n in used.items() if n > 1)
    unmatched = [c for c, r, _, _ in cmp.layer_map if r is None]
    if missing and len(matched) >= 2:
        ops.append(_op(Operation.LAYER_PRUNING, f"reference layers absent: {_ranges(missing)}"))
    if dup:
        ops.append(_op(Operation.LAYER_DUPLICATION, f"reference layers used twice or more: {_ranges(dup)}"))
    targets = [r for _, r in matched]
    if any(b < a for a, b in zip(targets, targets[1:], strict=False)):
        ops.append(_op(Operation.LAYER_REORDERING, "matched layers are out of order"))
    if unmatched and matched:
        ops.append(_op(Operation.UNMATCHED_LAYERS, f"candidate layers with no reference counterpart: {_ranges(unmatched)}"))

    n = len(align.cand_dims)
    if align.fixed_points is not None and align.fixed_points < 0.9 * n:
        ops.append(_op(Operation.PERMUTATION, f"hidden units permuted ({align.fixed_points}/{n} in place)"))
    if int((align.signs < 0).sum()) > 0.05 * n:
        ops.append(_op(Operation.SIGN_FLIP, f"{int((align.signs < 0).sum())} hidden units sign-flipped"))
    if ref.view is not None:
        ops.extend(_row_permutations(cand, ref.view, cmp, align))
    if cand.hidden < ref.hidden:
        ops.append(_op(Operation.WIDTH_PRUNING, f"hidden size {ref.hidden} -> {cand.hidden}"))

    tok = cmp.tokenizer
    if tok and tok["candidate_only"] > 0 and tok["reference_only"] <= 0.01 * max(tok["shared"], 1) \
            and cand.vocab_rows() > ref.vocab_rows:
        ops.append(_op(Operation.VOCAB_EXTENSION, f"{tok['candidate_only']} tokens added to the reference vocabulary"))
    elif tok and tok["reference_only"] > 0 and tok["candidate_only"] <= 0.01 * max(tok["shared"], 1) \
            and cand.vocab_rows() < ref.vocab_rows:
        ops.append(_op(Operation.VOCAB_REDUCTION, f"{tok['reference_only']} reference tokens removed"))

    if not ops and cmp.mean_best_similarity > 0.999 and _identical_first_layer(cand, ref):
        ops.append(_op(Operation.EXACT_COPY, "weights identical to the reference"))
    if cmp.mean_best_similarity < 0.5 and cmp.global_log10_p < -6:
        ops.append(_op(Operation.HEAVY_CONTINUED_TRAINING,
                       f"layer similarity {cmp.mean_best_similarity:.2f}: weights moved far from the reference"))
    return ops


def _op(name: Operation, detail: str) -> DetectedOperation:
    return DetectedOperation(name=name, detail=detail)


_FLOAT_NAMES = {"FLOAT32": "F32", "FLOAT16": "F16", "BFLOAT16": "BF16", "FLOAT64": "F64"}


def _float_kinds(dtypes: set[str]) -> set[str]:
    return {_FLOAT_NAMES.get(d, d) for d in dtypes}


def _row_permutations(cand: ModelView, ref: ModelView, cmp: Comparison, align: Alignment) -> list[DetectedOperation]:
    """Check one matched layer for permuted MLP neurons and attention heads (rows matched by assignment)."""
    ops: list[DetectedOperation] = []
    pair = next(((c, r) for c, r, _, _ in cmp.layer_map if r is not None), None)
    if pair is None:
        return ops
    wc = {role: name for role, name, _ in cand.layer_weights(pair[0])}
    wr = {role: name for role, name, _ in ref.layer_weights(pair[1])}
    for role, label in (("up", "MLP neurons"), ("gate", "MLP neurons"), ("q", "attention heads"), ("k", "attention heads")):
        if role not in wc or role not in wr:
            continue
        a = cand.matrix(wc[role])[:, align.cand_dims] * align.signs[None, :]
        b = ref.matrix(wr[role])[:, align.ref_dims]
        if a.shape[0] != b.shape[0] or a.shape[0] > 20000:
            continue
        a = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-12)
        b = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-12)
        c = a @ b.T / a.shape[1]
        rows, cols = linear_sum_assignment(-c)
        fixed = float((rows == cols).mean())
        if fixed < 0.9 and not any(o.detail.startswith(label) for o in ops):
            ops.append(_op(Operation.PERMUTATION, f"{label} permuted in layer {pair[0]} ({fixed:.0%} rows in place)"))
    return ops


def _identical_first_layer(cand: ModelView, ref: Reference) -> bool:
    """True when the first block's weights are bit-identical (float32) to the reference's."""
    if ref.view is None:
        from audit.fingerprinting.reference import layer0_hashes

        stored = ref.stored.get("layer0_sha256") or {}
        return bool(stored) and layer0_hashes(cand) == stored
    wc, wr = cand.layer_weights(cand.roles.layers()[0]), ref.view.layer_weights(ref.view.roles.layers()[0])
    if not wc or not wr:
        return False
    a, b = cand.matrix(wc[0][1]), ref.view.matrix(wr[0][1])
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _name_patterns(names: set[str]) -> set[str]:
    """Tensor names with block numbers blanked: adding or dropping layers renames nothing."""
    return {re.sub(r"(?<=\.)\d+(?=\.)", "#", n) for n in names}


def _ranges(values: list[int]) -> str:
    values = sorted(values)
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i == len(values) - 1 or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
