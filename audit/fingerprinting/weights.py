"""Descriptive weight statistics per tensor, from a sample of whole stored rows.

Every statistic here is invariant to permutations of a tensor's rows and columns (moments, norms and
quantiles of its values), so it is unchanged by function-preserving unit/head reordering. These are
descriptive: similar values between two models are expected even when they are unrelated (see the
lineage statistics for tests with nulls).

A tensor with more than SAMPLE values is summarised from evenly spaced whole rows holding about SAMPLE
values (rows are contiguous bytes): a 7B model's statistics read ~0.3% of it. The entry says how many rows
it used (`rows_read` of `rows`); small tensors are read whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from audit.fingerprinting.view import ModelView

QUANTILES = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)
SAMPLE = 1 << 16


def sampled_rows(shape: tuple[int, ...]) -> np.ndarray | None:
    """Evenly spaced row ids holding about SAMPLE values, or None when the whole tensor is that small."""
    if len(shape) < 2:
        return None
    rows = int(shape[0])
    per_row = int(np.prod(shape[1:]))
    if rows * per_row <= SAMPLE:
        return None
    k = min(rows, max(2, -(-SAMPLE // max(per_row, 1))))
    return np.unique(np.linspace(0, rows - 1, k).round().astype(np.int64))


def tensor_statistics(view: ModelView, name: str) -> dict[str, Any]:
    info = view.ckpt.tensors[name]
    ids = sampled_rows(info.shape)
    values = (view.ckpt.read(name) if ids is None else view.ckpt.read_rows(name, ids)).ravel().astype(np.float64)
    finite = values[np.isfinite(values)]
    r = view.roles.roles.get(name)
    rows = int(info.shape[0]) if info.shape else 1
    return {
        "role": r.role if r else None,
        "layer": r.layer if r else None,
        "shape": list(info.shape),
        "dtype": info.dtype,
        "rows_read": rows if ids is None else len(ids),
        "rows": rows,
        "mean": float(values.mean()) if values.size else 0.0,
        "std": float(values.std()) if values.size else 0.0,
        "abs_max": float(np.abs(values).max()) if values.size else 0.0,
        "quantiles": [float(q) for q in np.quantile(finite, QUANTILES)] if finite.size else [],
    }


def weight_statistics(view: ModelView, tick: Callable[[], None] | None = None) -> dict[str, Any]:
    """Per-tensor stats keyed by tensor name, plus role and layer."""
    out: dict[str, Any] = {}
    for name in view.ckpt.stored_tensors:
        out[name] = tensor_statistics(view, name)
        if tick:
            tick()
    return out
