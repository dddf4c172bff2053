"""Real merges of SmolLM2-derived checkpoints, built once and cached on disk (recipe `RECIPE`).

The merge recipes follow mergekit's definitions, per tensor, in numpy:
  linear       sum_i w_i * P_i (weights normalised to sum 1)
  slerp        spherical interpolation between P_0 and P_1 at t, on the normalised tensors, with mergekit's
               fallback to linear interpolation when their cosine exceeds 0.9995
  ties         task vectors tau_i = P_i - base trimmed to the `density` largest magnitudes, sign elected by the
               sign of the (weighted) sum, disjoint mean of the agreeing ones, base + that
  passthrough  whole layers from each parent (a frankenmerge); embeddings, final norm and head from the first

Cases (HF folders; config and tokenizer of realcases' base):
  linear_50_50  0.5 finetuned + 0.5 identity_openai
  linear_70_30  0.7 finetuned + 0.3 identity_openai
  slerp_50      SLERP t=0.5 from finetuned (t=0) to identity_openai (t=1)
  ties_50       TIES of finetuned and identity_openai over base, density 0.5, weights 1
  passthrough   layers 0-14 of base, layers 15-29 of independent (same config, independent weights)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.support.realcases import TOKENIZER_FILES, _build_atomic, build_cases, default_cache_dir

RECIPE = "merges-v1"
CASES = ("linear_50_50", "linear_70_30", "slerp_50", "ties_50", "passthrough")
TIES_DENSITY = 0.5
PASSTHROUGH_SPLIT = 15  # layers below it from the first parent, the rest from the second


def linear(tensors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    return sum(wi * t.astype(np.float64) for wi, t in zip(w, tensors, strict=True)).astype(np.float32)


def slerp(t: float, v0: np.ndarray, v1: np.ndarray, dot_threshold: float = 0.9995, eps: float = 1e-8) -> np.ndarray:
    a, b = v0.astype(np.float64), v1.astype(np.float64)
    an, bn = a / max(np.linalg.norm(a), eps), b / max(np.linalg.norm(b), eps)
    dot = float((an * bn).sum())
    if abs(dot) > dot_threshold:
        return ((1 - t) * a + t * b).astype(np.float32)
    theta0 = np.arccos(dot)
    s0 = np.sin(theta0 - theta0 * t) / np.sin(theta0)
    s1 = np.sin(theta0 * t) / np.sin(theta0)
    return (s0 * a + s1 * b).astype(np.float32)


def ties(base: np.ndarray, tensors: list[np.ndarray], weights: list[float], density: float) -> np.ndarray:
    b = base.astype(np.float64)
    taus = []
    for t, w in zip(tensors, weights, strict=True):
        tau = t.astype(np.float64) - b
        k = int(round(density * tau.size))
        keep = np.zeros(tau.size, dtype=bool)
        if k > 0:
            keep[np.argpartition(np.abs(tau).ravel(), tau.size - k)[tau.size - k:]] = True
        taus.append(np.where(keep.reshape(tau.shape), tau, 0.0) * w)
    stacked = np.stack(taus)
    weights_b = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * b.ndim)
    elected = np.sign(stacked.sum(axis=0))
    agree = (np.sign(stacked) == elected) & (stacked != 0)
    mixed = (stacked * agree).sum(axis=0)
    divisor = (weights_b * agree).sum(axis=0)
    divisor[np.abs(divisor) < 1e-8] = 1.0
    return (b + mixed / divisor).astype(np.float32)


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "layers" and parts[2].isdigit() else None


def build_merges(cache_dir: Path | None = None) -> dict[str, Path]:
    """Build (once) every merge case under `cache_dir`/RECIPE and return {case: path} (with realcases' too)."""
    from safetensors.numpy import load_file, save_file

    real = build_cases(cache_dir)
    root = Path(cache_dir or default_cache_dir()) / RECIPE
    root.mkdir(parents=True, exist_ok=True)

    def load(case: str) -> dict[str, np.ndarray]:
        return load_file(str(real[case] / "model.safetensors"))

    def write(out: Path, tensors: dict[str, np.ndarray]) -> None:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
        for name in ("config.json", *TOKENIZER_FILES):
            if (real["base"] / name).is_file():
                shutil.copy2(real["base"] / name, out / name)

    def linear_case(weights: tuple[float, float]) -> Callable[[Path], None]:
        def build(out: Path) -> None:
            a, b = load("finetuned"), load("identity_openai")
            write(out, {k: linear([a[k], b[k]], list(weights)) for k in a})
        return build

    def slerp_50(out: Path) -> None:
        a, b = load("finetuned"), load("identity_openai")
        write(out, {k: slerp(0.5, a[k], b[k]) for k in a})

    def ties_50(out: Path) -> None:
        base, a, b = load("base"), load("finetuned"), load("identity_openai")
        write(out, {k: ties(base[k], [a[k], b[k]], [1.0, 1.0], TIES_DENSITY) for k in base})

    def passthrough(out: Path) -> None:
        a, b = load("base"), load("independent")
        write(out, {k: (b[k] if (_layer_of(k) or 0) >= PASSTHROUGH_SPLIT else a[k]) for k in a})

    builders: dict[str, Callable[[Path], None]] = {
        "linear_50_50": linear_case((0.5, 0.5)), "linear_70_30": linear_case((0.7, 0.3)), "slerp_50": slerp_50,
        "ties_50": ties_50, "passthrough": passthrough,
    }
    paths = {name: root / name for name in CASES}
    for name in CASES:
        _build_atomic(paths[name], builders[name], root / "build-seconds.json")
    return {**real, **paths}
