"""Weight statistics per tensor, streamed one tensor (and, for big tensors, one row block) at a time.

Every statistic here is invariant to permutations of a tensor's rows and columns (moments, norms and
quantiles of its values), so it is unchanged by function-preserving unit/head reordering. These are
descriptive: similar values between two models are expected even when they are unrelated (see the
lineage statistics for tests with nulls).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from audit.fingerprinting.view import ModelView

QUANTILES = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)
SAMPLE = 1 << 16
BLOCK_ELEMENTS = 1 << 20  # 4 MiB of float32 per block: bounded memory, and small enough for malloc to reuse


def _blocks(view: ModelView, name: str) -> Iterator[np.ndarray]:
    shape = view.ckpt.tensors[name].shape
    rows = shape[0] if shape else 1
    per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    size = rows * per_row
    if len(shape) < 2 or size <= BLOCK_ELEMENTS:
        yield view.ckpt.read(name).ravel()
        return
    step = max(1, BLOCK_ELEMENTS // per_row)
    for start in range(0, rows, step):
        yield view.ckpt.read_rows(name, slice(start, min(rows, start + step))).ravel()


def tensor_statistics(view: ModelView, name: str) -> dict[str, Any]:
    info = view.ckpt.tensors[name]
    size = int(np.prod(info.shape)) if info.shape else 1
    stride = max(1, size // SAMPLE)
    count, mean, m2 = 0, 0.0, 0.0  # running moments, merged per block (Chan et al.) for float64-grade accuracy
    abs_max = 0.0
    samples = []
    offset = 0
    for block in _blocks(view, name):
        if block.size:
            n_b = block.size
            mean_b = float(block.mean(dtype=np.float64))
            centred = block.astype(np.float64)
            centred -= mean_b
            m2_b = float(np.dot(centred, centred))
            delta = mean_b - mean
            total = count + n_b
            mean += delta * n_b / total
            m2 += m2_b + delta * delta * count * n_b / total
            count = total
            abs_max = float(np.fmax(abs_max, np.fmax(block.max(), -block.min())))
            if np.isnan(mean_b):
                abs_max = float("nan")
        first = (-offset) % stride
        samples.append(block[first::stride].copy())  # a copy, so the block itself can be freed
        offset += block.size
    var = m2 / count if count else 0.0
    sample = np.sort(np.concatenate(samples).astype(np.float64)) if samples else np.zeros(0)
    r = view.roles.roles.get(name)
    return {
        "role": r.role if r else None,
        "layer": r.layer if r else None,
        "shape": list(info.shape),
        "dtype": info.dtype,
        "mean": mean,
        "std": max(var, 0.0) ** 0.5,
        "abs_max": abs_max,
        "quantiles": [float(q) for q in np.quantile(sample, QUANTILES)] if sample.size else [],
    }


def weight_statistics(view: ModelView, tick: Callable[[], None] | None = None) -> dict[str, Any]:
    """Per-tensor stats keyed by tensor name, plus role and layer."""
    out: dict[str, Any] = {}
    for name in view.ckpt.tensors:
        out[name] = tensor_statistics(view, name)
        if tick:
            tick()
    return out
