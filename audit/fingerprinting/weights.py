"""Weight statistics per tensor, streamed one tensor at a time.

Every statistic here is invariant to permutations of a tensor's rows and columns (moments, norms and
quantiles of its values), so it is unchanged by function-preserving unit/head reordering. These are
descriptive: similar values between two models are expected even when they are unrelated (see the
lineage statistics for tests with nulls).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.lineage.view import ModelView

QUANTILES = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)
SAMPLE = 1 << 16


def weight_statistics(view: ModelView, tick=None) -> dict[str, Any]:
    """Per-tensor stats keyed by tensor name, plus role and layer."""
    out: dict[str, Any] = {}
    for name, info in view.ckpt.tensors.items():
        arr = view.ckpt.read(name).ravel()
        r = view.roles.roles.get(name)
        step = max(1, arr.size // SAMPLE)
        sample = np.sort(arr[::step].astype(np.float64))
        mean = float(arr.mean(dtype=np.float64)) if arr.size else 0.0
        out[name] = {
            "role": r.role if r else None,
            "layer": r.layer if r else None,
            "shape": list(info.shape),
            "dtype": info.dtype,
            "mean": mean,
            "std": float(arr.std(dtype=np.float64)) if arr.size else 0.0,
            "abs_max": float(np.abs(arr).max()) if arr.size else 0.0,
            "quantiles": [float(q) for q in np.quantile(sample, QUANTILES)] if sample.size else [],
        }
        del arr
        if tick:
            tick()
    return out
