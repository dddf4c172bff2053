"""Statistics with nulls: every p-value is exact, or empirical with its floor, and says which.

- Empirical (permutation) p-values are (1 + #{null draws >= observed}) / (n + 1): n draws can never support
  a p-value below 1/(n + 1), however far outside the null the observed value sits; the effect size (z
  against the draws) says how far.
- Exact p-values come from a distribution derived for the statistic under a stated assumption (here: an
  independently trained model's hidden units and MLP neurons are in a uniformly random order relative to
  any other model's, because initialisation is i.i.d. across units and training is permutation-equivariant).
  They are computed in log space, so they stay exact far below the smallest float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp

from audit.record.models import Null, NullMethod
from audit.record.models import Statistic as RecordStatistic
from audit.record.names import StatisticName

LOG10E = 1.0 / math.log(10.0)
EXCHANGEABLE_UNITS = ("an independently trained model's units are in a uniformly random order relative to the "
                      "reference's (i.i.d. initialisation across units, permutation-equivariant training)")


@dataclass
class Statistic:
    """A statistic with its null; `log10_p` is exact, or empirical with floor log10(1/(n+1))."""

    name: StatisticName
    value: float
    method: NullMethod
    null_kind: str
    null_n: int | None
    log10_p: float
    null_mean: float | None = None
    null_sd: float | None = None
    assumption: str | None = None
    detail: str | None = None

    @property
    def effect(self) -> float | None:
        """z of the observed value against the null draws (empirical nulls), else None."""
        if self.null_mean is None or self.null_sd is None or self.null_sd <= 0:
            return None
        return (self.value - self.null_mean) / self.null_sd

    def to_record(self) -> RecordStatistic:
        """The record's form: value, effect size, null (how it was built, its assumption), p-value, meaning."""
        effect = self.effect
        return RecordStatistic(
            name=self.name, value=round(float(self.value), 6),
            effect=round(float(effect), 3) if effect is not None else None,
            null=Null(method=self.method, kind=self.null_kind, n=self.null_n,
                      mean=None if self.null_mean is None else round(float(self.null_mean), 6),
                      sd=None if self.null_sd is None else round(float(self.null_sd), 6),
                      assumption=self.assumption),
            p_value=float(10 ** self.log10_p) if self.log10_p > -300 else 0.0,
            log10_p=round(float(self.log10_p), 3), meaning=self.name.meaning, detail=self.detail,
        )


def empirical_p(value: float, draws: np.ndarray) -> float:
    """One-sided permutation p-value (1 + #{draws >= value}) / (n + 1): never below 1/(n + 1)."""
    draws = np.asarray(draws, dtype=np.float64)
    return float((1 + np.count_nonzero(draws >= value)) / (len(draws) + 1))


def empirical_stat(name: StatisticName, value: float, draws: np.ndarray, kind: str,
                   detail: str | None = None) -> Statistic:
    """A statistic judged against n permutation draws (mean and sd kept for the effect size)."""
    draws = np.asarray(draws, dtype=np.float64)
    sd = float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0
    return Statistic(name, float(value), "empirical", kind, int(len(draws)), math.log10(empirical_p(value, draws)),
                     null_mean=float(np.mean(draws)), null_sd=max(sd, 1e-9), detail=detail)


def fixed_points_log10_sf(k: int, n: int) -> float:
    """Exact log10 P(F >= k) for F the fixed points of a uniformly random permutation of n elements.

    P(F = j) = s(n - j) / j!, with s(m) = sum_{i<=m} (-1)^i / i! (the share of derangements of m elements).
    """
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    j = np.arange(k, n + 1)
    m = n - j
    s = _derangement_share(int(m.max()))[m]
    ok = s > 0
    return float(logsumexp(np.log(s[ok]) - gammaln(j[ok] + 1.0)) * LOG10E)


def _derangement_share(m_max: int) -> np.ndarray:
    """s(m) = sum_{i=0}^{m} (-1)^i / i! for m = 0..m_max (exactly e^-1 to double precision beyond m ~ 20)."""
    out = np.empty(m_max + 1)
    acc, term = 0.0, 1.0
    for m in range(m_max + 1):
        if m > 0:
            term /= -m
        acc += term
        out[m] = max(acc, 0.0)
    return out


def argmax_hits_log10_bound(hits: int, n: int) -> float:
    """log10 of an upper bound on P(at least `hits` tested rows have their best match at their own index).

    Under the null the stored order of the candidate's n rows is a uniformly random permutation t,
    independent of what the best matches are computed from, so row i hits when t(i) falls in the set A_i of
    rows whose best match is i (the A_i are disjoint). All rows of a set T of size h hit with probability
    prod|A_i| (n - h)! / n!; summing over sets, P <= e_h(|A_i|) (n - h)! / n! <= n^h / h! * (n - h)! / n!.
    """
    if hits <= 0:
        return 0.0
    log_p = hits * math.log(n) + gammaln(n - hits + 1.0) - gammaln(hits + 1.0) - gammaln(n + 1.0)
    return min(0.0, float(log_p) * LOG10E)


def fisher_log10_p(log10_ps: list[float]) -> float:
    """Fisher's combination of independent p-values, exact for even degrees of freedom, in log space.

    X = -2 sum ln p_i; P(chi2_{2L} >= X) = exp(-X/2) sum_{i<L} (X/2)^i / i!.
    """
    if not log10_ps:
        return 0.0
    half = -sum(lp / LOG10E for lp in log10_ps)  # X / 2
    if half <= 0:
        return 0.0
    i = np.arange(len(log10_ps))
    log_sf = -half + logsumexp(i * math.log(half) - gammaln(i + 1.0))
    return min(0.0, float(log_sf) * LOG10E)


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit sd (rows of zeros stay zero): rows' dot products / n are correlations."""
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-12)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0
