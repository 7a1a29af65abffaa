"""Comparing two samples, with the standard library only (the controller imports no numpy).

What `bluegreen drift` (``drift.py``) computes per feature, live inputs against the
training values in the model's card, and for the predicted classes against the holdout's:

- ``psi``: the population stability index over bins (``quantile_cuts``: cut at the
  training sample's quantiles). Convention: below 0.1 stable, 0.1-0.25 moderate, above
  0.25 shifted. On samples this small it has a floor of its own: with no drift at all its
  expected value is about (bins - 1) x (1/n_live + 1/n_training) (``psi_noise``).
- ``ks_two_sample``: the two-sample Kolmogorov-Smirnov statistic D (the largest gap
  between the two empirical distribution functions) and its asymptotic p-value
  (``kolmogorov_sf`` with Stephens' small-sample correction). Ties (iris is measured to
  0.1 cm) make it conservative: a p-value that is, if anything, too large.
- ``chi2_sf``: the chi-square tail, for the homogeneity test of two sets of class counts.

These are fixed-sample tests looked at once per report, unlike the bake's (stats.py).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from statistics import quantiles

# A bin with no rows on one side would make PSI infinite: shares are floored here.
PSI_FLOOR = 1e-4


def quantile_cuts(values: list[float], bins: int) -> list[float]:
    """The inner cut points of ``bins`` equal-count bins of ``values`` (numpy's linear
    quantiles), without repeats: tied values can merge bins."""
    if len(values) < 2 or bins < 2:
        return []
    cuts = quantiles(values, n=bins, method="inclusive")
    return sorted(set(cuts))


def bin_counts(cuts: list[float], values: list[float]) -> list[int]:
    """How many of ``values`` fall in each bin: below the first cut, between two cuts
    (a value equal to a cut belongs to the bin above it), at or above the last."""
    counts = [0] * (len(cuts) + 1)
    for value in values:
        counts[bisect_right(cuts, value)] += 1
    return counts


def shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, PSI_FLOOR), max(a, PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def psi_noise(bins: int, n: int, m: int) -> float:
    """About what PSI is between two samples of sizes ``n`` and ``m`` from one distribution."""
    return (bins - 1) * (1 / n + 1 / m) if n and m else math.inf


def ks_statistic(a: list[float], b: list[float]) -> float:
    """The largest gap between the empirical distribution functions of sorted ``a`` and ``b``."""
    n, m = len(a), len(b)
    i = j = 0
    gap = 0.0
    while i < n and j < m:
        x = min(a[i], b[j])
        while i < n and a[i] <= x:
            i += 1
        while j < m and b[j] <= x:
            j += 1
        gap = max(gap, abs(i / n - j / m))
    return gap


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution (two series, each fast where it is used)."""
    if lam <= 0:
        return 1.0
    if lam < 1.18:
        y = math.exp(-math.pi ** 2 / (8 * lam * lam))
        cdf = math.sqrt(2 * math.pi) / lam * sum(y ** ((2 * k - 1) ** 2) for k in range(1, 6))
        return min(1.0, max(0.0, 1.0 - cdf))
    x = math.exp(-2 * lam * lam)
    return min(1.0, max(0.0, 2 * (x - x ** 4 + x ** 9 - x ** 16)))


def ks_two_sample(a: list[float], b: list[float]) -> tuple[float, float]:
    """(D, p-value) of the two-sample Kolmogorov-Smirnov test on sorted ``a`` and ``b``."""
    if not a or not b:
        return 0.0, 1.0
    d = ks_statistic(a, b)
    effective = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    return d, kolmogorov_sf((effective + 0.12 + 0.11 / effective) * d)


def _gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:  # the series for P converges here
        term = total = 1.0 / a
        k = a
        for _ in range(1000):
            k += 1
            term *= x / k
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    # Lentz's continued fraction for Q.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square variable with ``df`` degrees of freedom."""
    return _gamma_q(df / 2, x / 2) if df > 0 else 1.0


def homogeneity(first: list[int], second: list[int]) -> tuple[float, int, float]:
    """Chi-square test that two sets of counts over the same categories come from one
    distribution: (statistic, degrees of freedom, p-value). Categories empty on both sides
    are left out."""
    pairs = [(f, s) for f, s in zip(first, second, strict=True) if f or s]
    n1, n2 = sum(f for f, _ in pairs), sum(s for _, s in pairs)
    if not n1 or not n2 or len(pairs) < 2:
        return 0.0, 0, 1.0
    total = n1 + n2
    statistic = 0.0
    for f, s in pairs:
        column = f + s
        for observed, row in ((f, n1), (s, n2)):
            expected = row * column / total
            statistic += (observed - expected) ** 2 / expected
    df = len(pairs) - 1
    return statistic, df, chi2_sf(statistic, df)
