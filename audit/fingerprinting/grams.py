"""Per-layer descriptors that survive neuron and head permutations: cosine Gram matrices on the hidden side.

For a weight whose stored rows are hidden units (o and down projections, W (hidden, n)), G = W Wᵀ restricted
to m aligned hidden units is unchanged by any permutation (or rotation) of W's columns: MLP neurons,
attention heads, GQA groups. Normalising G to cosines also cancels per-unit
rescaling (e.g. norm weights folded into the next matrix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audit.fingerprinting.view import ModelView


@dataclass
class LayerGrams:
    keys: list[tuple[int, str]]  # (layer, "role:side")
    grams: np.ndarray  # (N, m, m) cosine Gram matrices in the reference's unit order
    norms: dict[int, np.ndarray]  # layer -> stacked norm weights (k, m), same unit order

    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.keys})


def compute_grams(view: ModelView, dims: np.ndarray, signs: np.ndarray | None,
                  tick: Callable[[], None] | None = None, columns: bool = False) -> LayerGrams:
    """Read the selected hidden units' rows of each block's row-readable weights; keep their (m, m) cosine Gram.

    Only weights whose stored rows are hidden units are used (o and down projections in (out, in) storage,
    the input projections of transposed (Conv1D) storage): their rows are contiguous bytes, so this reads
    m rows per weight instead of the whole tensor. `columns=True` adds the weights whose hidden units are
    stored columns (each read whole): for two models whose storage layouts share no row-readable kind.
    """
    keys: list[tuple[int, str]] = []
    grams: list[np.ndarray] = []
    norms: dict[int, np.ndarray] = {}
    view.prefetch([(name, dims) for layer in view.roles.layers() for _, name, _ in view.row_weights(layer)])
    for layer in view.roles.layers():
        for role, name, side in weight_sides(view, layer, columns):
            if side in [s for _, n, s in view.row_weights(layer) if n == name]:
                x = view.hidden_rows(name, dims)
            else:
                w = view.matrix(name)
                x = w[:, dims].T if side == "in" else w[dims, :]
            if signs is not None:
                x = x * signs[:, None]
            grams.append(cosine_gram(x))
            keys.append((layer, f"{role}:{side}"))
            if tick:
                tick()
        layer_norms = [view.ckpt.read(n)[dims] for _, n in view.layer_norms(layer)]
        if layer_norms:
            norms[layer] = np.stack(layer_norms)
    m = len(dims)
    return LayerGrams(keys, np.stack(grams) if grams else np.zeros((0, m, m), np.float32), norms)


def cosine_gram(x: np.ndarray) -> np.ndarray:
    """(m, m) cosines between the rows of x (m, n), float32."""
    g = x @ x.T
    d = np.sqrt(np.clip(np.diag(g), 1e-30, None))
    return (g / d[:, None] / d[None, :]).astype(np.float32)


def weight_sides(view: ModelView, layer: int, columns: bool = False) -> list[tuple[str, str, str]]:
    """(role, tensor, side) of the block's weights the Grams use: row-readable ones, or all with `columns`."""
    if not columns:
        return view.row_weights(layer)
    return [(role, name, side) for role, name, sides in view.layer_weights(layer) for side in sides]


def weight_kinds(view: ModelView, columns: bool = False) -> set[str]:
    """The "role:side" kinds compute_grams would produce, without reading anything."""
    return {f"{role}:{side}" for layer in view.roles.layers() for role, _, side in weight_sides(view, layer, columns)}


def descriptors(grams: np.ndarray, perm: np.ndarray | None = None) -> np.ndarray:
    """Upper-triangle entries of each Gram (optionally with units permuted), z-scored per row."""
    m = grams.shape[-1]
    iu = np.triu_indices(m, k=1)
    g = grams if perm is None else grams[:, perm][:, :, perm]
    v = g[:, iu[0], iu[1]]
    v = v - v.mean(axis=1, keepdims=True)
    sd = v.std(axis=1, keepdims=True)
    return (v / np.where(sd > 0, sd, 1.0)).astype(np.float32)
