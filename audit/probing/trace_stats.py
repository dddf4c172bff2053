"""Statistics of `provaudit trace`: every p-value comes with the null it is computed against.

* `stratified_permutation`: two-sample test, strata = prompts. Under H0 (subject and reference are the same
  model sampled at the same settings) the subject's and the reference's completions of one prompt are
  exchangeable, so relabelling them within each prompt gives the null. Exact enumeration when the number of
  relabellings is small (p exact), else `draws` random relabellings (p >= 1/(draws+1)).
* `sign_test`: exact one-sided binomial test on per-prompt differences (H0: P(difference > 0) <= 1/2,
  prompts independent).
* `holm`: Holm's step-down adjustment (controls the family-wise error rate under any dependence).
* `billing_fit`: ordinary least squares of billed prompt tokens on the user text's token count, with
  standard errors of slope and offset.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

EXACT_LIMIT = 20_000  # enumerate every relabelling up to this many; sample beyond


@dataclass(frozen=True)
class TestResult:
    """A statistic, its p-value and how the null was obtained."""

    value: float
    p_value: float
    method: Literal["exact", "empirical"]
    n: int  # relabellings enumerated or random draws
    kind: str


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (None entries are skipped and stay None); monotone, capped at 1."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: float(pvalues[i]))  # type: ignore[arg-type]
    m = len(order)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        p = float(pvalues[i])  # type: ignore[arg-type]
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _stat(groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean over strata of mean(a) - mean(b)."""
    return float(np.mean([a.mean() - b.mean() for a, b in groups]))


def stratified_permutation(groups: Sequence[tuple[Sequence[float], Sequence[float]]], draws: int = 1999,
                           seed: int = 0, two_sided: bool = True) -> TestResult:
    """Two-sample permutation test within strata; statistic = mean over strata of mean(a) - mean(b).

    `groups`: per stratum (a-values, b-values), both non-empty. Two-sided by default (|statistic|).
    """
    arrs = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in groups if len(a) and len(b)]
    if not arrs:
        return TestResult(0.0, 1.0, "exact", 0, "no stratum with values on both sides")
    observed = _stat(arrs)
    kind = "relabel subject/reference completions within each prompt"

    def extreme(values: np.ndarray) -> np.ndarray:
        tol = 1e-12 * max(1.0, abs(observed))
        if two_sided:
            return np.abs(values) >= abs(observed) - tol
        return values >= observed - tol

    sizes = [math.comb(len(a) + len(b), len(a)) for a, b in arrs]
    total = math.prod(sizes)
    if total <= EXACT_LIMIT:
        per_stratum = []
        for a, b in arrs:
            pooled = np.concatenate([a, b])
            na, n = len(a), len(pooled)
            diffs = []
            for pick in itertools.combinations(range(n), na):
                mask = np.zeros(n, dtype=bool)
                mask[list(pick)] = True
                diffs.append(pooled[mask].mean() - pooled[~mask].mean())
            per_stratum.append(np.asarray(diffs))
        grid = np.zeros(1)
        for d in per_stratum:
            grid = (grid[:, None] + d[None, :]).ravel()
        values = grid / len(arrs)
        p = float(extreme(values).mean())
        return TestResult(observed, max(p, 1.0 / total), "exact", total, kind)
    rng = np.random.default_rng(seed)
    acc = np.zeros(draws)
    for a, b in arrs:
        pooled = np.concatenate([a, b])
        perms = rng.permuted(np.tile(pooled, (draws, 1)), axis=1)
        acc += perms[:, :len(a)].mean(axis=1) - perms[:, len(a):].mean(axis=1)
    values = acc / len(arrs)
    p = (1 + int(extreme(values).sum())) / (draws + 1)
    return TestResult(observed, p, "empirical", draws, kind)


def sign_test(diffs: Sequence[float], tie: float = 0.0) -> TestResult:
    """Exact one-sided sign test: are the differences positive more often than chance? |d| <= tie are dropped."""
    from scipy.stats import binomtest

    kept = [d for d in diffs if abs(d) > tie]
    k = sum(d > 0 for d in kept)
    n = len(kept)
    p = float(binomtest(k, n, 0.5, alternative="greater").pvalue) if n else 1.0
    return TestResult(k / n if n else 0.0, p, "exact", n, "Binomial(n, 1/2) on the signs of per-prompt differences")


@dataclass(frozen=True)
class BillingFit:
    """billed = offset + slope * tokens; standard errors from the OLS residuals (0 for an exact fit)."""

    slope: float
    offset: float
    slope_se: float
    offset_se: float
    points: int
    max_residual: float


def billing_fit(tokens: Sequence[float], billed: Sequence[float]) -> BillingFit | None:
    """OLS fit of billed prompt tokens on the user text's token count; None with fewer than 3 points or no spread."""
    x = np.asarray(tokens, dtype=float)
    y = np.asarray(billed, dtype=float)
    n = len(x)
    if n < 3 or len(y) != n or float(np.ptp(x)) == 0.0:
        return None
    design = np.column_stack([np.ones(n), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    sigma2 = float(resid @ resid) / (n - 2)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    return BillingFit(slope=float(coef[1]), offset=float(coef[0]), slope_se=math.sqrt(max(cov[1, 1], 0.0)),
                      offset_se=math.sqrt(max(cov[0, 0], 0.0)), points=n, max_residual=float(np.abs(resid).max()))
