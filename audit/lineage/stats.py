"""Statistics with nulls: every number we report carries the distribution it takes without derivation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from audit.record.models import Null
from audit.record.models import Statistic as RecordStatistic
from audit.record.names import StatisticName

LOG10E = 1.0 / math.log(10.0)
# Tail probabilities beyond this are reported as "< 1e-300": the normal approximation to a permutation
# null says nothing precise that far out, only that the value is far outside it.
MIN_LOG10_P = -300.0


@dataclass
class Statistic:
    name: StatisticName
    value: float
    null_mean: float
    null_sd: float
    null_n: int
    null_kind: str
    log10_p: float
    detail: str | None = None

    def to_record(self) -> RecordStatistic:
        """The record's form: value, null (mean, sd, n, how it was built), p-value and the name's meaning."""
        return RecordStatistic(
            name=self.name, value=round(float(self.value), 6),
            null=Null(mean=round(float(self.null_mean), 6), sd=round(float(self.null_sd), 6), n=int(self.null_n),
                      kind=self.null_kind),
            p_value=float(10 ** self.log10_p) if self.log10_p > MIN_LOG10_P else 0.0,
            log10_p=round(float(self.log10_p), 3), meaning=self.name.meaning, detail=self.detail,
        )


def gaussian_log10_p(value: float, null: np.ndarray) -> tuple[float, float, float]:
    """One-sided log10 p of `value` under a normal fitted to null draws; returns (log10p, mean, sd).

    The sd is floored at 1e-6 so a degenerate null cannot produce an infinite z.
    """
    mean = float(np.mean(null))
    sd = max(float(np.std(null, ddof=1)) if len(null) > 1 else 0.0, 1e-6)
    return max(MIN_LOG10_P, float(stats.norm.logsf((value - mean) / sd) * LOG10E)), mean, sd


def poisson_fixed_points_log10_p(fixed: int) -> float:
    """log10 P(a uniformly random permutation has >= `fixed` fixed points) (Poisson(1) limit)."""
    if fixed <= 0:
        return 0.0
    return max(MIN_LOG10_P, float(stats.poisson.logsf(fixed - 1, 1.0) * LOG10E))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0
