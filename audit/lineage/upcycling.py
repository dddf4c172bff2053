"""MoE upcycling: experts of a Mixture-of-Experts candidate initialised from a dense parent's MLPs.

Sparse upcycling (Komatsuzaki et al., 2022; Mixtral-, Qwen-MoE-style) copies each dense MLP into every expert of
the same block and adds a freshly initialised router. An expert's down projection stores its rows as hidden
units, so the rows over the aligned hidden units can be read cheaply and matched with the parent's dense down
projection, expert by expert:

* the cosine Gram of those rows (hidden unit x hidden unit) is unchanged by any order of the expert's neurons;
  its correlation with each parent layer's Gram names the parent layer the expert resembles most, with an
  empirical p against permutations of the parent's hidden units (maximum over parent layers, so the choice of
  the best layer is paid for);
* when the expert is as wide as the parent's MLP, the neurons are matched as in the mlp-neuron-identity test:
  how many tested neurons have their best-correlated parent neuron at their own index, with an exact bound
  (the Gram ignores neuron order, so picking the parent layer does not spend the bound).

Routers (block_sparse_moe.gate, mlp.gate) have no dense counterpart: when the parent has none they are reported
as new weights.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from audit.fingerprinting.grams import cosine_gram, descriptors
from audit.fingerprinting.view import ModelView
from audit.lineage.align import Alignment
from audit.lineage.stats import argmax_hits_log10_bound, zscore_rows
from audit.record.names import Operation

MAX_UNITS = 128  # aligned hidden units whose rows are read from each expert and parent down projection
MAX_EXPERTS = 512  # experts tested (an even sample beyond this; Mixtral-8x7B has 256, DeepSeek-V3 ~15k)
MAX_NEURONS = 256  # neurons per expert in the exact neuron-identity test
N_PERM = 99  # permutations of the parent's hidden units for the Gram null: empirical p >= 1/100
EXACT_LOG10 = -6.0  # an expert whose neurons sit at the parent's indices with p < 1e-6 is a copy
GRAM_ALPHA = 0.01  # ... or whose Gram beats every permutation draw ...
GRAM_FLOOR = 0.5  # ... with at least this similarity (compare.EFFECT_FLOOR, the same calibrated floor)
_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)\.")


@dataclass(frozen=True)
class ExpertMatch:
    """One expert of one MoE layer against the parent's dense MLPs."""

    layer: int
    expert: str  # expert index, or "shared" for a shared expert
    tensor: str  # the expert's down projection
    parent_layer: int | None  # the parent layer whose dense MLP it copies; None when it matches none
    similarity: float  # correlation of the cosine Grams with the best parent layer's down projection
    gram_log10_p: float  # empirical, maximum over parent layers, >= log10(1/(N_PERM+1))
    neuron_hits: int | None  # tested neurons whose best parent neuron sits at their own index
    neurons_tested: int | None
    neuron_log10_p: float | None  # exact bound (None when widths differ)

    @property
    def log10_p(self) -> float:
        return min(self.gram_log10_p, self.neuron_log10_p if self.neuron_log10_p is not None else 0.0)

    @property
    def matched(self) -> bool:
        return self.parent_layer is not None


@dataclass
class UpcyclingFinding:
    """Experts of the candidate that copy the parent's dense MLPs, and the routers the parent lacks."""

    parent: str
    experts: list[ExpertMatch]
    routers: list[str]  # router tensors of the candidate
    routers_new: bool  # the parent has no router: the candidate's routers are new weights
    log10_p: float  # strongest expert's p, Bonferroni over the experts tested
    detail: str
    operation: Operation = field(default=Operation.UPCYCLING)

    @property
    def matched(self) -> list[ExpertMatch]:
        return [e for e in self.experts if e.matched]

    def expert_map(self) -> dict[tuple[int, str], int | None]:
        """(candidate layer, expert) -> parent layer (None: no match)."""
        return {(e.layer, e.expert): e.parent_layer for e in self.experts}


def expert_downs(view: ModelView) -> list[tuple[int, str, str]]:
    """(layer, expert label, tensor) of the candidate's expert down projections stored with hidden-unit rows."""
    out = []
    for name, r in view.roles.roles.items():
        if r.role != "expert_down" or r.layer is None or r.transpose or len(view.ckpt.tensors[name].shape) != 2:
            continue
        m = _EXPERT.search(name)
        out.append((r.layer, m.group(1) if m else "shared", name))
    return sorted(out, key=lambda t: (t[0], t[1] == "shared", int(t[1]) if t[1].isdigit() else 0))


def _dense_downs(view: ModelView) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, r in view.roles.roles.items():
        if r.role == "down" and r.layer is not None and not r.transpose and len(view.ckpt.tensors[name].shape) == 2:
            out.setdefault(r.layer, name)
    return dict(sorted(out.items()))


def _routers(view: ModelView) -> list[str]:
    return sorted((n for n, r in view.roles.roles.items() if r.role == "router"),
                  key=lambda n: (view.roles.roles[n].layer or 0, n))


def _gram_descriptor(rows: np.ndarray) -> np.ndarray:
    """Cosine Gram of hidden-unit rows (m, n) as a z-scored upper triangle: unchanged by any neuron order."""
    return descriptors(cosine_gram(rows)[None])[0]


def find_upcycling(cand_view: ModelView, parent_view: ModelView, alignment: Alignment,
                   seed: int = 0) -> UpcyclingFinding | None:
    """Match every expert of the candidate's MoE layers with the parent's dense MLPs; None when the candidate has
    no experts, the parent no dense MLP, too few hidden units align, or no expert matches."""
    experts = expert_downs(cand_view)
    parents = _dense_downs(parent_view)
    if not experts or not parents or len(alignment.cand_dims) < 8:
        return None
    total = len(experts)
    if total > MAX_EXPERTS:  # untrusted counts: test an even sample spread over the layers
        experts = [experts[i] for i in np.linspace(0, total - 1, MAX_EXPERTS).round().astype(int)]
    rng = np.random.default_rng(seed)
    k = min(MAX_UNITS, len(alignment.cand_dims))
    pick = np.sort(rng.choice(len(alignment.cand_dims), k, replace=False))
    cdims, pdims, signs = alignment.cand_dims[pick], alignment.ref_dims[pick], alignment.signs[pick]

    p_layers = list(parents)
    # descriptors only are kept; the rows are read again (from the row cache while it has room) when needed
    p_desc = np.stack([_gram_descriptor(parent_view.hidden_rows(parents[lay], pdims)) for lay in p_layers])
    # the null: parent hidden units permuted, i.e. the parent descriptors gathered in permuted pair order
    iu = np.triu_indices(k, k=1)
    table = np.zeros((k, k), dtype=np.int64)
    table[iu] = np.arange(len(iu[0]))
    table = table + table.T
    perms = [rng.permutation(k) for _ in range(N_PERM)]
    p_null = np.concatenate([p_desc[:, table[p[iu[0]], p[iu[1]]]] for p in perms])  # (N_PERM * L, D)

    cand_view.prefetch([(name, cdims) for _, _, name in experts])
    e_desc = np.stack([_gram_descriptor(cand_view.hidden_rows(name, cdims) * signs[:, None])
                       for _, _, name in experts]).T  # (D, E)
    n_desc = p_desc.shape[1]
    sims = p_desc @ e_desc / n_desc  # (L, E)
    null_best = (p_null @ e_desc / n_desc).reshape(N_PERM, len(p_layers), -1).max(axis=1)  # (N_PERM, E)
    matches: list[ExpertMatch] = []
    for i, (layer, label, name) in enumerate(experts):
        j = int(np.argmax(sims[:, i]))
        best = float(sims[j, i])
        gram_log10 = math.log10((1 + int(np.count_nonzero(null_best[:, i] >= best))) / (N_PERM + 1))
        hits = tested = None
        neuron_log10 = None
        n = int(cand_view.oriented_shape(name)[1])
        if int(parent_view.oriented_shape(parents[p_layers[j]])[1]) == n and n >= 2:
            b = parent_view.hidden_rows(parents[p_layers[j]], pdims)
            tested_ids = np.sort(rng.choice(n, min(MAX_NEURONS, n), replace=False))
            a = zscore_rows((cand_view.hidden_rows(name, cdims) * signs[:, None]).T[tested_ids])
            hits = int(np.count_nonzero(np.argmax(a @ zscore_rows(b.T).T, axis=1) == tested_ids))
            tested = len(tested_ids)
            neuron_log10 = argmax_hits_log10_bound(hits, n)
        exact = neuron_log10 is not None and neuron_log10 < EXACT_LOG10
        empirical = gram_log10 <= math.log10(GRAM_ALPHA) and best >= GRAM_FLOOR
        matches.append(ExpertMatch(layer, label, name, p_layers[j] if (exact or empirical) else None, best,
                                   gram_log10, hits, tested, neuron_log10))
    matched = [e for e in matches if e.matched]
    if not matched:
        return None
    routers = _routers(cand_view)
    routers_new = bool(routers) and not _routers(parent_view)
    log10_p = min(0.0, min(e.log10_p for e in matches) + math.log10(len(matches)))
    detail = _detail(parent_view.name, matches, routers, routers_new, log10_p)
    if total > len(experts):
        detail = detail[:-1] + f" (an even sample of {len(experts)} of the {total} experts was tested)."
    return UpcyclingFinding(parent_view.name, matches, routers, routers_new, log10_p, detail)


def _detail(parent: str, matches: list[ExpertMatch], routers: list[str], routers_new: bool, log10_p: float) -> str:
    matched = [e for e in matches if e.matched]
    layers = sorted({e.layer for e in matches})
    same = sum(1 for e in matched if e.parent_layer == e.layer)
    sims = sorted(e.similarity for e in matched)
    parts = [f"{len(matched)} of {len(matches)} experts in {len(layers)} MoE layers were initialised from "
             f"{parent}'s dense MLPs ({same} from the MLP of the same layer; median Gram similarity "
             f"{sims[len(sims) // 2]:.2f}"]
    tested = [e for e in matched if e.neurons_tested]
    if tested:
        hits = sum(e.neuron_hits or 0 for e in tested)
        total = sum(e.neurons_tested or 0 for e in tested)
        parts.append(f", {hits} of {total} tested neurons at the parent's index")
    parts.append(f"; p <= 1e{math.floor(log10_p)})" if log10_p < -1 else ")")
    unmatched = len(matches) - len(matched)
    if unmatched:
        parts.append(f"; {unmatched} experts match no parent MLP")
    if routers:
        parts.append(f"; the {len(routers)} router weights are new, with no counterpart in the parent" if routers_new
                     else f"; the parent has routers too, so the {len(routers)} routers were not judged new")
    return "".join(parts) + "."
