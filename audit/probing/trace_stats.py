"""Statistics of `provaudit trace`: every p-value comes with the null it is computed against.

* `sign_test`: exact one-sided binomial test on per-prompt differences (H0: P(difference > 0) <= 1/2,
  prompts independent).
* `pit_test`: randomized probability integral transform values of the subject's tokens under the reference
  at the sampling settings are Uniform(0, 1) when the subject samples from the reference, whatever those
  settings; their mean over N tokens is tested against 1/2 with a margin (re-tokenization and numerics move
  it a little) under the normal (martingale central limit) null; `tokens_for_power` / `achieved_power` give
  the sample size for a stated power against a stated shift.
* `holm`: Holm's step-down adjustment (controls the family-wise error rate under any dependence).
* `billing_fit`: ordinary least squares of billed prompt tokens on the user text's token count, with
  standard errors of slope and offset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

EXACT_LIMIT = 20_000  # permutation tests enumerate every relabelling up to this many; sample beyond


@dataclass(frozen=True)
class TestResult:
    """A statistic, its p-value and how the null was obtained."""

    value: float
    p_value: float
    method: Literal["exact", "empirical", "analytic"]
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


def pit_test(u: Sequence[float], margin: float = 0.0) -> TestResult:
    """H0: |E[u] - 1/2| <= margin for PIT values u (i.i.d. Uniform(0, 1) under the same model).

    Normal null for the mean with variance 1/(12 N) (the martingale central limit theorem: the answers stop at
    their end-of-turn token, so N is itself random); p = P(|mean - 1/2| >= observed) at the least favourable
    null mean 1/2 + margin. value = mean - 1/2."""
    from scipy.stats import norm

    n = len(u)
    if n == 0:
        return TestResult(0.0, 1.0, "analytic", 0, "no token to test")
    shift = float(np.mean(np.asarray(u, dtype=float))) - 0.5
    scale = math.sqrt(12 * n)
    # the least favourable null mean is 1/2 +- margin: both tails of |mean - 1/2| (two-sided when margin = 0)
    p = float(norm.sf((abs(shift) - margin) * scale) + norm.sf((abs(shift) + margin) * scale))
    return TestResult(shift, min(1.0, p), "analytic", n,
                      f"mean of N randomized PIT values, normal null with variance 1/(12N), margin {margin:g}")


def tokens_for_power(effect: float, margin: float, alpha: float, power: float) -> int:
    """Tokens the PIT test needs to reject a mean shift of `effect` with probability `power` at level `alpha`."""
    from scipy.stats import norm

    gap = effect - margin
    if gap <= 0:
        raise ValueError(f"the effect ({effect:g}) must exceed the margin ({margin:g})")
    return math.ceil(((norm.isf(alpha) + norm.ppf(power)) / (gap * math.sqrt(12))) ** 2)


def achieved_power(tokens: int, effect: float, margin: float, alpha: float) -> float:
    """The PIT test's power against a mean shift of `effect` with `tokens` tokens at level `alpha`."""
    from scipy.stats import norm

    return float(norm.cdf((effect - margin) * math.sqrt(12 * max(tokens, 0)) - norm.isf(alpha)))
