"""The statistics of /ab/status, with scipy.

Shoppers are the unit of randomisation, so each metric is a ratio of per-shopper sums (clicks /
impressions): its variance comes from the delta method over shoppers, not from counting
impressions as independent (a shopper's impressions are correlated, and treating them as
independent understates the variance). The relative lift and its interval are the delta-method
ones of GrowthBook's frequentist engine (gbstats 0.8, ``TwoSidedTTest`` with relative
differences): a Student t with Welch-Satterthwaite degrees of freedom. gbstats itself cannot be a
dependency (it pins pandas < 2 and numpy < 2); tests/test_experiments.py holds figures it
computed, and these functions must reproduce them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

SRM_P = 0.001


@dataclass(frozen=True)
class RatioStat:
    """Per-shopper numerators and denominators of one metric in one variant."""

    n: int
    mean_x: float
    mean_y: float
    var_x: float
    var_y: float
    cov_xy: float

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> RatioStat:
        n = len(x)
        if n < 2:
            return cls(n, float(x.mean()) if n else 0.0, float(y.mean()) if n else 0.0, 0, 0, 0)
        cov = np.cov(x, y, ddof=1)
        return cls(n, float(x.mean()), float(y.mean()), cov[0, 0], cov[1, 1], cov[0, 1])

    @property
    def value(self) -> float:
        return self.mean_x / self.mean_y if self.mean_y else 0.0

    @property
    def unit_variance(self) -> float:
        """Per-shopper variance of the ratio (delta method); over n shoppers, divided by n."""
        if not self.mean_y or self.n < 2:
            return 0.0
        r = self.value
        return float((self.var_x - 2 * r * self.cov_xy + r * r * self.var_y) / self.mean_y**2)


@dataclass(frozen=True)
class Lift:
    relative: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value is not None and self.p_value < alpha


def relative_lift(control: RatioStat, treatment: RatioStat, alpha: float = 0.05) -> Lift:
    """Treatment / control - 1 with a two-sided (1 - alpha) interval and p-value."""
    c, t = control.value, treatment.value
    if c <= 0 or control.n < 2 or treatment.n < 2:
        return Lift(None, None, None, None)
    lift = t / c - 1
    va, vb = control.unit_variance, treatment.unit_variance
    na, nb = control.n, treatment.n
    variance = vb / (c**2 * nb) + va * t**2 / (c**4 * na)
    if variance <= 0:
        return Lift(lift, lift, lift, 1.0 if lift == 0 else 0.0)
    se = variance**0.5
    # Welch-Satterthwaite degrees of freedom, as gbstats: a Student t, not a normal, so small
    # tests are not overconfident
    dof = (vb / nb + va / na) ** 2 / (vb**2 / (nb**2 * (nb - 1)) + va**2 / (na**2 * (na - 1)))
    width = float(stats.t.ppf(1 - alpha / 2, dof)) * se
    p = float(2 * stats.t.sf(abs(lift) / se, dof))
    return Lift(lift, lift - width, lift + width, p)


def sample_ratio_mismatch(observed: list[int], expected_shares: list[float]) -> tuple[float, bool]:
    """Pearson's chi-square test of the users per variant against the configured split:
    p-value, and whether it is below SRM_P (the split, or the logging, is broken)."""
    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return 1.0, False
    expected = [share * total for share in expected_shares]
    p = float(stats.chisquare(observed, expected).pvalue)
    return p, p < SRM_P


def sign_test(wins: int, losses: int) -> float:
    """Two-sided binomial test of interleaving preferences (ties dropped)."""
    if wins + losses == 0:
        return 1.0
    return float(stats.binomtest(wins, wins + losses, 0.5).pvalue)
