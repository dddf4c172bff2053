"""Compare one candidate with one reference: alignment, per-layer similarity, nulls, layer map, operations."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from audit.checkpoint.progress import Progress
from audit.errors import NothingComparable
from audit.fingerprinting.architecture import same_architecture, same_family_layout
from audit.fingerprinting.grams import LayerGrams, descriptors
from audit.fingerprinting.reference import Reference, live_reference
from audit.fingerprinting.view import ModelView
from audit.lineage.align import Alignment, align_hidden
from audit.lineage.stats import (
    EXCHANGEABLE_UNITS,
    Statistic,
    argmax_hits_log10_bound,
    corr,
    empirical_stat,
    fisher_log10_p,
    fixed_points_log10_sf,
    zscore_rows,
)
from audit.lineage.upcycling import find_upcycling
from audit.record.models import Alignment as RecordAlignment
from audit.record.models import Comparison as RecordComparison
from audit.record.models import DetectedOperation, Null, TokenizerComparison, UpdateShape, Verdict
from audit.record.names import PACKAGING, Operation, StatisticName

MAX_UNITS = 128  # hidden units kept for the Gram descriptors (stored fingerprints keep 128 as well)
N_PERM = 99  # permutations of hidden units for the layer-similarity null: empirical p >= 1/100
LAYER_ALPHA = 1e-2  # per-layer empirical p (Bonferroni over reference layers) to call a layer matched
# ... and the similarity a matched layer must reach (also the floor of the permutation-robust route to a
# derivation). Measured by benchmarks/bench_calibration.py on the row-readable weights: independent real models
# score <= 0.02; the hardest independent pairs, tiny same-config models trained on the same text, reach 0.39
# (best layer 0.44); derived pairs score >= 0.69 (best layer >= 0.77; siblings sharing an ancestor ~0.35, found
# by the exact tests).
EFFECT_FLOOR = 0.5
MAX_TESTED_NEURONS = 256  # MLP neurons per layer in the neuron-identity test
GGUF_QUANT_PREFIXES = ("Q", "IQ", "TQ", "I8", "I16", "I32", "MXFP", "NVFP")


@dataclass
class Comparison:
    """One candidate/reference comparison; `gram_*` is the permutation-robust evidence, `exact_log10_p` the
    exact evidence that weights sit where the reference has them (hidden units, MLP neurons)."""

    reference: str
    statistics: list[Statistic]
    layer_map: list[tuple[int, int | None, float, float]]  # cand layer, ref layer, similarity, log10 p
    layer_null: tuple[float, float, int]
    similarity: np.ndarray
    alignment: dict[str, Any]
    tokenizer: dict[str, Any] | None
    architecture_match: bool
    family_layout_match: bool = False  # same model_type, block layout and vocabulary at another size
    operations: list[DetectedOperation] = field(default_factory=list)
    global_log10_p: float = 0.0  # the strongest defensible evidence: min(exact, empirical gram)
    gram_log10_p: float = 0.0  # empirical, >= log10(1/(N_PERM+1))
    gram_z: float = 0.0  # effect size of the gram similarity against its permutation draws
    exact_log10_p: float = 0.0  # exact tests, Bonferroni over the tests run
    mean_best_similarity: float = 0.0
    live: bool = True  # the reference is a checkpoint (not a stored fingerprint)
    matched_fraction: float = 0.0
    layers_compared: int = 0
    update: UpdateShape | None = None  # how the weights moved, when both sides are checkpoints in place
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
            layer_null=Null(method="empirical", mean=round(mu, 6), sd=round(sd, 6), n=n,
                            kind="similarity of every layer pair after a random permutation of the reference's "
                                 "hidden units, pooled over layer pairs and draws"),
            reference_layers=reference_layers,
            alignment=RecordAlignment.model_validate(self.alignment),
            tokenizer=TokenizerComparison.model_validate(self.tokenizer) if self.tokenizer else None,
            architecture_match=self.architecture_match,
            operations=self.operations,
            update=self.update,
            verdict=verdict,
            seconds=round(self.seconds, 2),
        )


def compare_views(cand: ModelView | Reference, ref: ModelView | Reference, seed: int = 0,
                  progress: Progress | None = None, max_units: int = MAX_UNITS) -> Comparison:
    """Run the full white-box comparison of `cand` against `ref`; either may be a checkpoint or a stored
    fingerprint. Checks that need whole rows of both models (MLP neuron identity, row permutations, the
    exact-copy check against a live reference) run when both are checkpoints."""
    t0 = time.perf_counter()
    c = live_reference(cand) if isinstance(cand, ModelView) else cand
    r = live_reference(ref) if isinstance(ref, ModelView) else ref
    if not c.layers or not r.layers or not c.hidden or not r.hidden:
        raise NothingComparable(
            f"{c.name} and {r.name} have nothing comparable: no transformer blocks found "
            f"({len(c.layers)} vs {len(r.layers)} layers)"
        )
    rng = np.random.default_rng(seed)
    align = align_hidden(c, r, seed)
    pick = _pick_units(c, r, align, rng, max_units)
    m = len(pick)
    if m < 8:
        stored = "stored fingerprints' units" if c.units is not None else "hidden units"
        raise NothingComparable(f"{c.name} and {r.name} have nothing comparable: fewer than 8 {stored} align")
    tick = progress.tick if progress else None
    # whole rows where both storage layouts have them; where they share no row-readable weight kind (GPT-2's
    # transposed Conv1D against (out, in) storage), checkpoints also read the weights holding units in columns
    columns = not (c.kinds() & r.kinds())
    gc = c.grams(align.cand_dims[pick], align.signs[pick], tick, columns)
    gr = r.grams(align.ref_dims[pick], None, tick, columns)
    had = bool(gc.keys) and bool(gr.keys)
    gc, gr, pick = _finite_units(gc, gr, pick)
    m = len(pick)
    if m < 8 or (had and not (gc.keys and gr.keys)):
        raise NothingComparable(f"{c.name} and {r.name} have nothing comparable: too few hidden units or weights "
                                "hold finite, non-zero values (NaN, Inf and zero rows are left out)")
    if not len(gc.keys) or not len(gr.keys):
        raise NothingComparable(f"{c.name} and {r.name} have nothing comparable: no hidden-space weights")
    by_role = c.scheme != "structural" and r.scheme != "structural"
    dc, dr = descriptors(gc.grams), descriptors(gr.grams)
    kinds = _KindPairing(gc, gr, by_role)
    sim = kinds.similarity(dc, dr)
    if np.isnan(sim).all():
        raise NothingComparable(f"{c.name} and {r.name} have nothing comparable: no layer shares a weight kind")
    # a candidate layer with no kind in common with any reference layer can never match: score it -1
    sim = np.where(np.isnan(sim), -1.0, sim)

    # the null: the same statistic after a random permutation of the reference's hidden units. Permuting units
    # permutes the Gram entries, so the permuted descriptors are a gather of the z-scored ones.
    pairs = _pair_index(m)
    iu = np.triu_indices(m, k=1)
    null_vals, null_best = [], []
    for _ in range(N_PERM):
        perm = rng.permutation(m)
        s_perm = kinds.permuted(dc, dr, pairs[perm[iu[0]], perm[iu[1]]])
        null_vals.append(s_perm[~np.isnan(s_perm)])
        null_best.append(float(np.where(np.isnan(s_perm), -1.0, s_perm).max(axis=1).mean()))
    pooled = np.sort(np.concatenate(null_vals))
    mu0, sd0 = float(pooled.mean()), max(float(pooled.std()), 1e-9)

    cl, rl = gc.layers(), gr.layers()
    best_j = np.argmax(sim, axis=1)
    best = sim[np.arange(len(cl)), best_j]
    exceed = len(pooled) - np.searchsorted(pooled, best, side="left")  # pooled draws >= each layer's best
    layer_p = np.minimum(1.0, len(rl) * (1.0 + exceed) / (len(pooled) + 1.0))
    layer_log10 = np.log10(layer_p)
    matched = (layer_p < LAYER_ALPHA) & (best >= EFFECT_FLOOR)
    layer_map = [(cl[i], rl[best_j[i]] if matched[i] else None, float(best[i]), float(layer_log10[i]))
                 for i in range(len(cl))]

    T = float(best.mean())
    gram = empirical_stat(StatisticName.LAYER_GRAM_SIMILARITY, T, np.asarray(null_best),
                          f"{N_PERM} random permutations of the reference's hidden units")
    stats = [gram, _fixed_point_stat(align)]
    if c.view is not None and r.view is not None:
        neuron = _neuron_identity(c.view, r.view, align, pick, [(cl[i], rl[best_j[i]]) for i in range(len(cl))], rng)
        if neuron is not None:
            stats.append(neuron)
    norm_stat = _norm_stat(gc, gr, layer_map, rng)
    if norm_stat:
        stats.append(norm_stat)
    exact = [st.log10_p for st in stats if st.method == "exact"]
    exact_log10_p = min(0.0, min(exact) + math.log10(len(exact))) if exact else 0.0

    cmp = Comparison(
        reference=r.name, statistics=stats, layer_map=layer_map, layer_null=(mu0, sd0, len(pooled)),
        similarity=sim, alignment={**align.summary(c, r), "gram_units": m},
        tokenizer=r.tokenizer_comparison(c),
        architecture_match=same_architecture(c.arch, r.arch),
        family_layout_match=same_family_layout(c.arch, r.arch),
        global_log10_p=min(exact_log10_p, gram.log10_p), gram_log10_p=gram.log10_p, gram_z=gram.effect or 0.0,
        exact_log10_p=exact_log10_p, mean_best_similarity=T, matched_fraction=float(matched.mean()),
        live=r.view is not None,
        layers_compared=len(cl),
    )
    if cmp.matched_fraction > 0:
        cmp.operations = detect_operations(c, r, cmp, align)
        if c.view is not None and r.view is not None:
            cmp.update = update_shape(c.view, r.view, cmp, align)
            up = find_upcycling(c.view, r.view, align, seed)
            if up is not None:  # an MoE's expert names are not a renaming: the experts are the parent's MLPs
                cmp.operations = [o for o in cmp.operations if o.name != Operation.RENAMED_TENSORS]
                cmp.operations.append(_op(Operation.UPCYCLING, up.detail))
    cmp.seconds = time.perf_counter() - t0
    return cmp


def _live(g: LayerGrams) -> tuple[LayerGrams, np.ndarray]:
    """Drop the weights whose rows are mostly zero (NaN/Inf rows are zeroed when read, so they show here as zero
    rows: a cosine Gram's diagonal is 0 for them, 1 otherwise); return the rest and the units alive in all."""
    if not len(g.keys):
        return g, np.ones(g.grams.shape[-1], dtype=bool)
    diag = np.diagonal(g.grams, axis1=1, axis2=2) > 0.5  # (N, m)
    keep = diag.mean(axis=1) >= 0.5
    if not keep.all():
        g = LayerGrams([k for k, ok in zip(g.keys, keep.tolist(), strict=True) if ok], g.grams[keep], g.norms)
        diag = diag[keep]
    alive: np.ndarray = np.asarray(diag.all(axis=0)) if len(diag) else np.ones(g.grams.shape[-1], dtype=bool)
    return g, alive


def _finite_units(gc: LayerGrams, gr: LayerGrams, pick: np.ndarray) -> tuple[LayerGrams, LayerGrams, np.ndarray]:
    """The Grams restricted to the hidden units whose rows are finite and non-zero in both models (the rest
    carries no evidence), with weights that are mostly zero left out."""
    gc, live_c = _live(gc)
    gr, live_r = _live(gr)
    live = live_c & live_r
    if live.all():
        return gc, gr, pick

    def cut(g: LayerGrams) -> LayerGrams:
        return LayerGrams(g.keys, g.grams[:, live][:, :, live], {k: v[:, live] for k, v in g.norms.items()})

    return cut(gc), cut(gr), pick[live]


def _pick_units(c: Reference, r: Reference, align: Alignment, rng: np.random.Generator,
                max_units: int = MAX_UNITS) -> np.ndarray:
    """Positions (into the alignment) of the hidden units the Gram descriptors use: any `max_units` of them when
    both sides are checkpoints, else (up to that many of) the units the stored fingerprint(s) hold."""
    if c.units is None and r.units is None:
        k = min(max_units, len(align.ref_dims))
        return np.sort(rng.choice(len(align.ref_dims), k, replace=False))
    ok = np.ones(len(align.ref_dims), dtype=bool)
    if r.units is not None:
        ok &= np.isin(align.ref_dims, r.units)
    if c.units is not None:
        ok &= np.isin(align.cand_dims, c.units)
    found = np.flatnonzero(ok)
    if len(found) > max_units:
        found = np.sort(rng.choice(found, max_units, replace=False))
    return found


SCREEN_UNITS = 32  # hidden units of the first, cheap pass against a stored registry fingerprint
SCREEN_PASS = 0.15  # ... below this similarity, with no matched layer and no exact evidence, the pass stands


def compare_screened(cand: ModelView, ref: Reference, seed: int = 0, progress: Progress | None = None) -> Comparison:
    """Compare with a stored (registry) fingerprint in two passes: 32 hidden units first (a quarter of the rows),
    and the full 128 only when that pass is not clearly unrelated (similarity >= 0.15, a matched layer, or exact
    evidence below p = 0.01). Unrelated entries of a large registry then cost a quarter of a comparison each;
    the record's `alignment.gram_units` says which pass stands (its null is computed at that size)."""
    first = compare_views(cand, ref, seed=seed, progress=progress, max_units=SCREEN_UNITS)
    if first.mean_best_similarity < SCREEN_PASS and first.matched_fraction == 0 and first.exact_log10_p > -2:
        return first
    return compare_views(cand, ref, seed=seed, progress=progress)


def _pair_index(m: int) -> np.ndarray:
    """(m, m) symmetric table of each unit pair's position in the upper-triangle descriptor."""
    iu = np.triu_indices(m, k=1)
    table = np.zeros((m, m), dtype=np.int64)
    table[iu] = np.arange(len(iu[0]))
    return table + table.T


class _KindPairing:
    """Which candidate descriptors are compared with which reference descriptors (same weight kind).

    S[i, j], the similarity of candidate layer i and reference layer j, is the mean correlation of their
    same-kind descriptors. When either side's roles come from the structural fallback (unknown names), the
    correspondence of kinds is itself found by a linear assignment, repeated for every null draw.
    """

    def __init__(self, gc: LayerGrams, gr: LayerGrams, by_role: bool) -> None:
        self.gc, self.gr, self.by_role = gc, gr, by_role
        self.cl, self.rl = gc.layers(), gr.layers()
        self.ci = {lay: i for i, lay in enumerate(self.cl)}
        self.ri = {lay: j for j, lay in enumerate(self.rl)}
        self.groups = self._groups([key for _, key in gc.keys]) if by_role else []

    def _groups(self, keys_c: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for kind in sorted(set(keys_c) & {key for _, key in self.gr.keys}):
            ic = [(self.ci[lay], k) for k, ((lay, _), key) in enumerate(zip(self.gc.keys, keys_c, strict=True))
                  if key == kind]
            ir = [(self.ri[lay], k) for k, (lay, key) in enumerate(self.gr.keys) if key == kind]
            li, kc = zip(*ic, strict=True)
            lj, kr = zip(*ir, strict=True)
            out.append((np.asarray(li), np.asarray(kc), np.asarray(lj), np.asarray(kr)))
        return out

    def permuted(self, dc: np.ndarray, dr: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """similarity(dc, dr[:, columns]), with one gather per draw (the null loop's hot path)."""
        if self.by_role and not self.groups:  # no weight kind in common
            return np.full((len(self.cl), len(self.rl)), np.nan)
        if not self.by_role:
            return self.similarity(dc, dr[:, columns])
        if getattr(self, "_for", None) is not dr:  # candidate blocks and reference rows grouped by kind, once
            self._blocks = [np.ascontiguousarray(dc[kc]) for _, kc, _, _ in self.groups]
            rows = np.concatenate([kr for *_, kr in self.groups]) if self.groups else np.zeros(0, np.int64)
            self._dr_rows = np.ascontiguousarray(dr[rows])
            self._ends = np.cumsum([len(kr) for *_, kr in self.groups])
            shapes = {(len(kc), len(kr)) for _, kc, _, kr in self.groups}
            self._stacked = np.stack(self._blocks) if len(shapes) == 1 else None  # one batched product per draw
            self._buffer = np.empty_like(self._dr_rows)
            self._for = dr
        drp = np.take(self._dr_rows, columns, axis=1, out=self._buffer)  # no allocation per draw
        d = dc.shape[1]
        if self._stacked is not None:
            g, b = len(self.groups), len(self.groups[0][3])
            products = np.matmul(self._stacked, drp.reshape(g, b, -1).transpose(0, 2, 1)) / d
            return self._mean((li, lj, products[k]) for k, (li, _, lj, _) in enumerate(self.groups))
        starts = np.concatenate([[0], self._ends[:-1]]).astype(np.int64)
        return self._mean((li, lj, block @ drp[start:end].T / d) for (li, _, lj, _), block, start, end
                          in zip(self.groups, self._blocks, starts, self._ends, strict=True))

    def similarity(self, dc: np.ndarray, dr: np.ndarray) -> np.ndarray:
        if self.by_role:
            return self.permuted(dc, dr, np.arange(dr.shape[1]))
        full = dc @ dr.T / dc.shape[1]
        mapping = _match_kinds(full, self.gc.keys, self.gr.keys)
        groups = self._groups([mapping.get(key, "unmatched:" + key) for _, key in self.gc.keys])
        return self._mean((li, lj, full[np.ix_(kc, kr)]) for li, kc, lj, kr in groups)

    def _mean(self, parts: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """S[i, j] as the mean of the same-kind blocks (candidate layers li x reference layers lj); NaN where
        a pair of layers shares no kind."""
        acc = np.zeros((len(self.cl), len(self.rl)), dtype=np.float64)
        cnt = np.zeros_like(acc)
        for li, lj, block in parts:
            acc[np.ix_(li, lj)] += block
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
        StatisticName.HIDDEN_ALIGNMENT_IDENTITY, float(fixed), "exact",
        f"fixed points of a uniformly random permutation of {n} hidden units", n,
        fixed_points_log10_sf(fixed, n) if align.fixed_points is not None else 0.0,
        null_mean=1.0, null_sd=1.0, assumption=EXCHANGEABLE_UNITS,
        detail=f"{fixed} of {n} hidden units align with the same index" if align.fixed_points is not None
        else "hidden sizes differ: no unit can sit at its own index",
    )


_MLP_ROWS = ("down", "up", "gate", "gate_up")  # MLP weights whose stored rows may be hidden units


def _mlp_rows(view: ModelView, layer: int, dims: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(role, rows) of a block's row-readable MLP weight for hidden units `dims`: column j is neuron j."""
    weights = {role: name for role, name, _ in view.row_weights(layer)}
    role = next((r for r in _MLP_ROWS if r in weights), None)
    if role is None:
        return None
    return role, view.hidden_rows(weights[role], dims)


def _neuron_identity(cand: ModelView, ref: ModelView, align: Alignment, pick: np.ndarray,
                     pairs: list[tuple[int, int]], rng: np.random.Generator) -> Statistic | None:
    """Do the candidate's MLP neurons sit at the reference's indices? Exact, per layer, Fisher over layers.

    For each candidate layer and the reference layer it resembles most, up to MAX_TESTED_NEURONS candidate
    neurons (columns of the down projection's rows over the aligned hidden units: each neuron's output
    weights) are matched to their most correlated reference neuron. Under independence each layer's neuron
    order is uniformly random and independent of the other layers' (and of the alignment and layer pairing,
    which ignore neuron order), which bounds the chance of each layer's hits; the layers' bounds are
    combined with Fisher's method.
    """
    cols_c, cols_r, signs = align.cand_dims[pick], align.ref_dims[pick], align.signs[pick]
    log10_ps, hits_total, tested_total, layers = [], 0, 0, 0
    for c_layer, r_layer in pairs:
        got_c, got_r = _mlp_rows(cand, c_layer, cols_c), _mlp_rows(ref, r_layer, cols_r)
        if got_c is None or got_r is None or got_c[0] != got_r[0]:
            continue
        a_all, b = (got_c[1] * signs[:, None]).T, got_r[1].T  # (neurons, m)
        n = a_all.shape[0]
        if n != b.shape[0] or n < 2:
            continue
        rows = np.sort(rng.choice(n, min(MAX_TESTED_NEURONS, n), replace=False))
        a = a_all[rows]
        a, b = zscore_rows(a), zscore_rows(b)
        hits = int(np.count_nonzero(np.argmax(a @ b.T, axis=1) == rows))
        log10_ps.append(argmax_hits_log10_bound(hits, n))
        hits_total += hits
        tested_total += len(rows)
        layers += 1
    if not layers:
        return None
    return Statistic(
        StatisticName.MLP_NEURON_IDENTITY, hits_total / tested_total, "exact",
        "uniformly random order of each layer's MLP neurons (a bound on the hits, Fisher's method over layers)",
        tested_total, fisher_log10_p(log10_ps), assumption=EXCHANGEABLE_UNITS + "; layers independently",
        detail=f"{hits_total} of {tested_total} tested MLP neurons in {layers} layers best match the reference "
               "neuron at their own index",
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
    return empirical_stat(StatisticName.NORM_WEIGHTS_CENTRED, value, np.asarray(null),
                          "200 random permutations of the hidden units")


def detect_operations(cand: Reference, ref: Reference, cmp: Comparison, align: Alignment) -> list[DetectedOperation]:
    """Name what the deriver did: repackaging, permutation, pruning, vocabulary extension, quantization."""
    ops: list[DetectedOperation] = []
    fc, fr = cand.format, ref.format
    converted = _format_family(fc) != _format_family(fr)
    if converted:
        ops.append(_op(Operation.FORMAT_CONVERSION, f"{fr} -> {fc}"))
    mt_c, mt_r = cand.arch.get("model_type"), ref.arch.get("model_type")
    if cand.scheme == "structural":
        ops.append(_op(Operation.RENAMED_TENSORS, f"tensor names follow no known scheme (reference: {ref.scheme})"))
    elif not converted and (cand.scheme != ref.scheme or _name_patterns(cand.tensor_names) != _name_patterns(ref.tensor_names)):
        extra = sorted(_name_patterns(cand.tensor_names) - _name_patterns(ref.tensor_names))
        shown = f" ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})" if extra else ""
        moved = f"; model_type {mt_r!r} -> {mt_c!r}" if mt_c != mt_r and mt_r else ""
        ops.append(_op(Operation.RENAMED_TENSORS, f"naming scheme {ref.scheme} -> {cand.scheme}; "
                                                  f"{len(extra)} tensor name patterns not in the reference{shown}{moved}"))
    if mt_c != mt_r and mt_r and not any(o.name == Operation.RENAMED_TENSORS for o in ops):
        ops.append(_op(Operation.RENAMED_TENSORS, f"model_type {mt_r!r} -> {mt_c!r}"))
    layout = _fused_layout(cand, ref)
    if layout:
        at = next((i for i, o in enumerate(ops) if o.name == Operation.FORMAT_CONVERSION), None)
        if at is None:
            ops.insert(0, _op(Operation.FORMAT_CONVERSION, layout))
        else:
            ops[at] = _op(Operation.FORMAT_CONVERSION, f"{ops[at].detail}; {layout}")
    qc = [d for d in cand.storage_dtypes if d.startswith(GGUF_QUANT_PREFIXES) or d in ("int8", "uint8", "I8", "U8")]
    qr = [d for d in ref.storage_dtypes if d.startswith(GGUF_QUANT_PREFIXES) or d in ("int8", "uint8", "I8", "U8")]
    if qc and set(qc) != set(qr):
        ops.append(_op(Operation.QUANTIZATION, f"{', '.join(qc)} weights"))
    float_c = {d.upper() for d in cand.storage_dtypes} - {d.upper() for d in qc}
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
        ops.append(_op(Operation.LAYER_PRUNING, f"reference layers absent: {ranges_text(missing)}"))
    if dup:
        ops.append(_op(Operation.LAYER_DUPLICATION, f"reference layers used twice or more: {ranges_text(dup)}"))
    targets = [r for _, r in matched]
    if any(b < a for a, b in zip(targets, targets[1:], strict=False)):
        ops.append(_op(Operation.LAYER_REORDERING, "matched layers are out of order"))
    if unmatched and matched:
        ops.append(_op(Operation.UNMATCHED_LAYERS, f"candidate layers with no reference counterpart: {ranges_text(unmatched)}"))

    n = len(align.cand_dims)
    if align.fixed_points is not None and align.fixed_points < 0.9 * n:
        ops.append(_op(Operation.PERMUTATION, f"hidden units permuted ({align.fixed_points}/{n} in place)"))
    if int((align.signs < 0).sum()) > 0.05 * n:
        ops.append(_op(Operation.SIGN_FLIP, f"{int((align.signs < 0).sum())} hidden units sign-flipped"))
    if ref.view is not None and cand.view is not None:
        ops.extend(_row_permutations(cand.view, ref.view, cmp, align))
    width = _width_pruning(cand, ref)
    if width is not None:
        ops.append(width)

    tok = cmp.tokenizer
    if tok and tok["candidate_only"] > 0 and tok["reference_only"] <= 0.01 * max(tok["shared"], 1) \
            and cand.vocab_rows > ref.vocab_rows:
        ops.append(_op(Operation.VOCAB_EXTENSION, f"{tok['candidate_only']} tokens added to the reference vocabulary"))
    elif tok and tok["reference_only"] > 0 and tok["candidate_only"] <= 0.01 * max(tok["shared"], 1) \
            and cand.vocab_rows < ref.vocab_rows:
        ops.append(_op(Operation.VOCAB_REDUCTION, f"{tok['reference_only']} reference tokens removed"))

    quantized = _rounding(cand.storage_dtypes) >= 0.02  # coarse storage lowers the similarity of a copy
    if not any(o.name not in PACKAGING for o in ops) and (cmp.mean_best_similarity > 0.99 or quantized):
        copy = _copy_of_first_layer(cand, ref, align)
        if copy is not None:
            ops.append(_op(Operation.EXACT_COPY, copy))
    if cmp.mean_best_similarity < 0.5 and cmp.global_log10_p < -6:
        ops.append(_op(Operation.HEAVY_CONTINUED_TRAINING,
                       f"layer similarity {cmp.mean_best_similarity:.2f}: weights moved far from the reference"))
    return ops


def _fused_layout(cand: Reference, ref: Reference) -> str | None:
    """How projections were fused or split between the two checkpoints (a layout change, not a weight change)."""
    from audit.fingerprinting.roles import fused_summary

    fc = fused_summary(cand.view.roles) if cand.view is not None else None
    fr = fused_summary(ref.view.roles) if ref.view is not None else None
    if fc == fr:
        return None
    parts = []
    if fc:
        parts.append(f"candidate {fc}")
    if fr:
        parts.append(f"reference {fr}")
    return "; ".join(parts) + " (compared part by part)"


_WIDTHS = (("hidden_size", "hidden units"), ("num_heads", "attention heads"), ("num_kv_heads", "key/value heads"),
           ("intermediate_size", "MLP neurons"))


def _width_pruning(cand: Reference, ref: Reference) -> DetectedOperation | None:
    """Which widths were cut from the parent (hidden size, heads, MLP neurons), with the share of units kept."""
    parts = []
    for key, label in _WIDTHS:
        a, b = cand.arch.get(key), ref.arch.get(key)
        if isinstance(a, int) and isinstance(b, int) and 0 < a < b:
            parts.append(f"{label} {b} -> {a} ({a / b:.0%} kept)")
    return _op(Operation.WIDTH_PRUNING, "; ".join(parts)) if parts else None


def _format_family(fmt: str) -> str:
    """gguf, onnx, or hf (safetensors, HF folders, pickles: one tensor-naming world)."""
    return fmt if fmt in ("gguf", "onnx") else "hf"


def _op(name: Operation, detail: str) -> DetectedOperation:
    return DetectedOperation(name=name, detail=detail)


_FLOAT_NAMES = {"FLOAT32": "F32", "FLOAT16": "F16", "BFLOAT16": "BF16", "FLOAT64": "F64"}


def _float_kinds(dtypes: set[str]) -> set[str]:
    return {_FLOAT_NAMES.get(d, d) for d in dtypes}


def _row_permutations(cand: ModelView, ref: ModelView, cmp: Comparison, align: Alignment) -> list[DetectedOperation]:
    """Check one matched layer for permuted MLP neurons and attention heads: columns of the row-readable MLP and
    attention-output weights over the aligned hidden units; a sample of candidate columns is matched to its most
    correlated reference column, and fewer than 90% found at their own index means the order changed."""
    ops: list[DetectedOperation] = []
    pair = next(((c, r) for c, r, _, _ in cmp.layer_map if r is not None), None)
    if pair is None:
        return ops
    wc = {role: name for role, name, _ in cand.row_weights(pair[0])}
    wr = {role: name for role, name, _ in ref.row_weights(pair[1])}
    dims_c, dims_r = align.cand_dims[:MAX_UNITS], align.ref_dims[:MAX_UNITS]
    rng = np.random.default_rng(0)
    for role, label in (*((r, "MLP neurons") for r in _MLP_ROWS), ("o", "attention heads")):
        if role not in wc or role not in wr or any(o.detail.startswith(label) for o in ops):
            continue
        a = (cand.hidden_rows(wc[role], dims_c) * align.signs[:MAX_UNITS, None]).T
        b = ref.hidden_rows(wr[role], dims_r).T
        if a.shape != b.shape:
            continue
        cols = np.sort(rng.choice(a.shape[0], min(MAX_TESTED_NEURONS, a.shape[0]), replace=False))
        live = np.any(a[cols] != 0, axis=1) & np.any(b[cols] != 0, axis=1)  # zero (or NaN, zeroed) columns: no evidence
        if int(live.sum()) < 8:
            continue
        cols = cols[live]
        a = a[cols]
        a, b = zscore_rows(a), zscore_rows(b)
        fixed = float((np.argmax(a @ b.T, axis=1) == cols).mean())
        if fixed < 0.9:
            ops.append(_op(Operation.PERMUTATION, f"{label} permuted in layer {pair[0]} ({fixed:.0%} of sampled "
                                                  "columns in place)"))
    return ops


UPDATE_ROWS = 128  # rows per weight on which the shape of a fine-tune's update is measured
UPDATE_LAYERS = 2  # matched layers measured


def update_shape(cand: ModelView, ref: ModelView, cmp: Comparison, align: Alignment) -> UpdateShape | None:
    """The rank of the weight difference on evenly spaced whole rows of the first matched layers, when the hidden
    units sit in place (a fine-tune, not a permuted copy). A merged LoRA of rank r changes each adapted weight by
    a rank-r matrix, so any set of its rows has rank <= r; a full fine-tune's difference has full rank."""
    n = len(align.cand_dims)
    if align.fixed_points is None or align.fixed_points < 0.9 * n:
        return None
    pairs = [(c, r) for c, r, _, _ in cmp.layer_map if r is not None][:UPDATE_LAYERS]
    if not pairs:
        return None
    tol = max(_rounding(cand.ckpt.storage_dtypes), _rounding(ref.ckpt.storage_dtypes), 1e-6)
    ranks: dict[str, int] = {}
    full: dict[str, int] = {}
    unchanged: set[str] = set()
    blurred: set[str] = set()
    rows = 0
    for c_layer, r_layer in pairs:
        wc = {role: name for role, name, _ in cand.layer_weights(c_layer)}
        wr = {role: name for role, name, _ in ref.layer_weights(r_layer)}
        for role in sorted(set(wc) & set(wr)):
            sc, sr = cand.ckpt.tensors[wc[role]].shape, ref.ckpt.tensors[wr[role]].shape
            if sc != sr or cand.roles.roles[wc[role]].transpose != ref.roles.roles[wr[role]].transpose:
                continue
            ids = np.unique(np.linspace(0, sc[0] - 1, min(UPDATE_ROWS, sc[0])).round().astype(np.int64))
            b = ref.stored_rows(wr[role], ids).astype(np.float64)
            d = cand.stored_rows(wc[role], ids).astype(np.float64) - b
            rows = max(rows, len(ids))
            rel = float(np.linalg.norm(d) / (np.linalg.norm(b) or 1.0))
            if rel <= tol:
                unchanged.add(role)
                continue
            if rel <= 10 * tol:  # the update hides in the storage rounding: its rank cannot be read
                blurred.add(role)
                continue
            energy = np.cumsum(np.linalg.svd(d, compute_uv=False) ** 2)
            r99 = int(np.searchsorted(energy / energy[-1], 0.99) + 1)
            full[role] = min(d.shape)
            ranks[role] = max(ranks.get(role, 0), min(r99, full[role]))
    unchanged -= set(ranks) | blurred
    if not ranks:
        return None
    low = all(r <= max(1, full[k] // 4) for k, r in ranks.items())
    kinds = ", ".join(f"{k} {v} of {full[k]}" for k, v in sorted(ranks.items()))
    detail = (f"rank of the weight difference (99% of its energy) on {rows} rows of layer(s) "
              f"{', '.join(str(c) for c, _ in pairs)}: {kinds}")
    if unchanged:
        detail += f"; unchanged: {', '.join(sorted(unchanged))}"
    if blurred:
        detail += f"; too small against the storage rounding to measure: {', '.join(sorted(blurred))}"
    detail += (": low-rank, the signature of a merged LoRA-style adapter" if low
               else ": full-rank, a full fine-tune (or an adapter of high rank)")
    return UpdateShape(layers=[c for c, _ in pairs], rows=rows, rank99=ranks, full_rank=full, unchanged=sorted(unchanged),
                       low_rank=low, detail=detail)


# Relative RMS difference a pure re-encoding leaves, by storage type (3x the rounding of round-to-nearest
# with that many levels; per-tensor int8 as ONNX exports use it rounds coarser than 32-weight Q8 blocks):
# within it, a copy and a fine-tune too light to see through the rounding look alike.
_ROUNDING = (("F64", 1e-12), ("F32", 1e-6), ("FLOAT32", 1e-6), ("F16", 1e-3), ("FLOAT16", 1e-3),
             ("BF16", 4e-3), ("BFLOAT16", 4e-3), ("Q8", 0.02), ("I8", 0.06), ("U8", 0.06), ("INT8", 0.06),
             ("UINT8", 0.06), ("Q6", 0.07), ("Q5", 0.14), ("MXFP4", 0.27), ("NVFP4", 0.27),
             ("IQ4", 0.27), ("Q4", 0.27), ("IQ3", 0.54), ("Q3", 0.54), ("IQ2", 1.0), ("Q2", 1.0), ("IQ1", 1.0),
             ("TQ", 1.0))


def _rounding(dtypes: list[str]) -> float:
    """The coarsest rounding among the storage types (unknown types count as exact)."""
    out = 0.0
    for d in dtypes:
        out = max(out, next((tol for prefix, tol in _ROUNDING if d.upper().startswith(prefix)), 0.0))
    return out


def _copy_of_first_layer(cand: Reference, ref: Reference, align: Alignment) -> str | None:
    """How the first block's weights equal the reference's (bit for bit, or within the storage rounding), or None.

    Compares stored rows: the first rows of the first block's row-readable weights (a stored fingerprint keeps
    their hashes and a sample), or, between two checkpoints, those weights' rows at the aligned hidden units.
    """
    # only the rounding of the candidate's own storage: a copy re-encoded from the reference carries it, while a
    # float copy of a quantized reference holds its dequantized values exactly
    tol = _rounding(cand.storage_dtypes)
    if cand.view is None:
        return None  # two stored fingerprints: their rows are not kept
    view = cand.view
    if ref.view is None:
        from audit.fingerprinting.reference import layer0_hashes, layer0_rows, layer0_sample_positions

        stored = ref.stored.get("layer0_sha256") or {}
        if stored and layer0_hashes(view) == stored:
            return "weights identical to the reference"
        role = ref.stored.get("layer0_sample_role")
        rows = layer0_rows(view)
        if ref.layer0_sample is None or role not in rows:
            return None
        flat = rows[role].ravel()
        positions = layer0_sample_positions(flat.size)
        if len(positions) != ref.layer0_sample.size:
            return None
        return _within_rounding(flat[positions], ref.layer0_sample, tol)
    wc = {role: name for role, name, _ in view.row_weights(view.roles.layers()[0])}
    wr = {role: name for role, name, _ in ref.view.row_weights(ref.view.roles.layers()[0])}
    role = next((r for r in sorted(wc) if r in wr), None)
    if role is None:
        return None
    k = min(MAX_UNITS, len(align.cand_dims))
    a = view.hidden_rows(wc[role], align.cand_dims[:k]) * align.signs[:k, None]
    b = ref.view.hidden_rows(wr[role], align.ref_dims[:k])
    if a.shape != b.shape:
        return None
    return _within_rounding(a, b, tol)


def _within_rounding(a: np.ndarray, b: np.ndarray, tol: float) -> str | None:
    if np.array_equal(a, b):
        return "weights identical to the reference"
    rel = float(np.linalg.norm(a - b) / (np.linalg.norm(b) or 1.0))
    if tol > 1e-6 and rel <= tol:
        return (f"weights equal the reference's within the rounding of their storage types (relative difference "
                f"{rel:.2g} <= {tol:.2g}); a fine-tune smaller than that rounding cannot be told apart")
    return None


def _name_patterns(names: set[str]) -> set[str]:
    """Tensor names with block numbers blanked: adding or dropping layers renames nothing."""
    return {re.sub(r"(?<=\.)\d+(?=\.)", "#", n) for n in names}


def ranges_text(values: list[int]) -> str:
    """Sorted integers as runs: [0, 1, 2, 5] -> "0-2, 5"."""
    values = sorted(values)
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i == len(values) - 1 or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
