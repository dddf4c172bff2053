"""Per-layer descriptors that survive neuron and head permutations: cosine Gram matrices on the hidden side.

For a weight W (out, in) whose input lives in the residual stream, G = Wᵀ W restricted to m aligned hidden
units is unchanged by any permutation (or rotation) of W's rows: MLP neurons, attention heads, GQA groups.
For outputs in the residual stream (o, down) we use W Wᵀ. Normalising G to cosines also cancels per-unit
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
                  tick: Callable[[], None] | None = None) -> LayerGrams:
    """Read each block's weights once and keep only the (m, m) cosine Gram of the selected hidden units."""
    keys: list[tuple[int, str]] = []
    grams: list[np.ndarray] = []
    norms: dict[int, np.ndarray] = {}
    for layer in view.roles.layers():
        for role, name, sides in view.layer_weights(layer):
            w = view.matrix(name)
            for side in sides:
                x = w[:, dims] if side == "in" else w[dims, :].T
                if signs is not None:
                    x = x * signs[None, :]
                g = x.T @ x
                d = np.sqrt(np.clip(np.diag(g), 1e-30, None))
                grams.append((g / d[:, None] / d[None, :]).astype(np.float32))
                keys.append((layer, f"{role}:{side}"))
            if tick:
                tick()
        layer_norms = [view.ckpt.read(n)[dims] for _, n in view.layer_norms(layer)]
        if layer_norms:
            norms[layer] = np.stack(layer_norms)
    m = len(dims)
    return LayerGrams(keys, np.stack(grams) if grams else np.zeros((0, m, m), np.float32), norms)


def descriptors(grams: np.ndarray, perm: np.ndarray | None = None) -> np.ndarray:
    """Upper-triangle entries of each Gram (optionally with units permuted), z-scored per row."""
    m = grams.shape[-1]
    iu = np.triu_indices(m, k=1)
    g = grams if perm is None else grams[:, perm][:, :, perm]
    v = g[:, iu[0], iu[1]]
    v = v - v.mean(axis=1, keepdims=True)
    sd = v.std(axis=1, keepdims=True)
    return (v / np.where(sd > 0, sd, 1.0)).astype(np.float32)
