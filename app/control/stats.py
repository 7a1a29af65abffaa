"""The statistics behind the bake's gates, with the standard library only.

A bake looks at the same growing sample every poll, so a test at a fixed confidence that
is repeated at every poll fails a healthy version far more often than its confidence
says. Every test here stays valid however often it is looked at (docs/adr/0010):

- ``anytime_interval``: bounds on a proportion (accuracy, error rate, slow requests)
  that hold at every sample size at once, from a mixture martingale and Ville's
  inequality: the chance that the true proportion is ever outside them, over the whole
  bake, is at most ``1 - confidence``.
- ``sprt``: Wald's sequential probability ratio test between two accuracies ("as good as
  the stable version" and "worse by the drop to catch"). Its boundaries come from
  Ville's inequality too, so crossing one is as unlikely as the confidence says however
  long the test runs.
- ``wilson_interval``: the usual interval for a sample that is looked at once (the
  stable version's figures, fixed during a blue-green bake).

The controller must not import numpy; these are a few logarithms per poll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

# The mixture is over a Jeffreys prior, Beta(1/2, 1/2): it keeps the bounds tight near 0
# and 1, where error rates and good accuracies live.
_PRIOR = 0.5
_LOG_BETA_PRIOR = math.log(math.pi)  # log B(1/2, 1/2)
# Newton steps stop this close to the boundary (in log-martingale units): far below what
# any verdict or printed figure distinguishes.
_TOLERANCE = 1e-10
_TINY = 1e-12


@dataclass(frozen=True)
class Interval:
    """Bounds on a proportion, and the estimate they surround."""

    estimate: float
    low: float
    high: float


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _check(successes: int, n: int, confidence: float) -> None:
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n} trials is not a sample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


@lru_cache(maxsize=65536)
def anytime_interval(successes: int, n: int, confidence: float) -> Interval:
    """Bounds that contain the true proportion at every ``n`` at once, with ``confidence``.

    The set of proportions ``p`` whose mixture martingale (the likelihood of the data
    averaged over a Jeffreys prior, divided by the likelihood at ``p``) is still below
    ``1 / (1 - confidence)``. Under the true ``p`` that ratio is a nonnegative martingale,
    so by Ville's inequality it ever reaches the bound with probability at most
    ``1 - confidence``: the bounds may be checked after every observation.

    With no trials the bounds are 0 and 1 (nothing is known).
    """
    _check(successes, n, confidence)
    if n == 0:
        return Interval(math.nan, 0.0, 1.0)
    k, m = successes, n - successes
    estimate = k / n
    # f(p) = log(mixture / likelihood at p) - log(1 / (1 - confidence)): convex in p, lowest
    # at the estimate; the bounds are its two roots (or 0 and 1 when it stays below zero).
    offset = _log_beta(k + _PRIOR, m + _PRIOR) - _LOG_BETA_PRIOR + math.log(1 - confidence)

    def f(p: float) -> float:
        return offset - (k * math.log(p) if k else 0.0) - (m * math.log1p(-p) if m else 0.0)

    def slope(p: float) -> float:
        return -k / p + m / (1 - p)

    def root(side: int) -> float:
        # Start outside the root (f > 0) and walk in with Newton steps: on a convex
        # function they approach the root from outside and never pass it.
        width = math.sqrt(2 * (-math.log(1 - confidence) + 1) * max(estimate * (1 - estimate), 1 / n) / n)
        x = estimate + side * width
        while 0 < x < 1 and f(x) <= 0:
            width *= 2
            x = estimate + side * width
        x = min(max(x, _TINY), 1 - _TINY)
        for _ in range(200):
            value = f(x)
            if value < _TOLERANCE:
                break
            x -= value / slope(x)
        return x

    low = 0.0 if k == 0 or f(_TINY) <= 0 else root(-1)
    high = 1.0 if m == 0 or f(1 - _TINY) <= 0 else root(+1)
    return Interval(estimate, max(0.0, low), min(1.0, high))


@lru_cache(maxsize=4096)
def wilson_interval(successes: int, n: int, confidence: float) -> Interval:
    """The Wilson score interval, two-sided at ``confidence``, for a sample looked at once."""
    _check(successes, n, confidence)
    if n == 0:
        return Interval(math.nan, 0.0, 1.0)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Sprt:
    """Wald's test of accuracy ``p0`` (H0) against ``p1`` (H1, lower) after ``n`` labels.

    ``llr`` is the log-likelihood ratio of H1 to H0. It is at or above ``upper`` (H1
    accepted: the accuracy is nearer ``p1``) with probability at most ``alpha`` when the
    true accuracy is ``p0`` or better, and at or below ``lower`` (H0 accepted) with
    probability at most ``beta`` when it is ``p1`` or worse, however many labels are
    looked at, and however often.
    """

    p0: float
    p1: float
    n: int
    successes: int
    llr: float
    upper: float
    lower: float

    @property
    def accepts_h1(self) -> bool:
        return self.llr >= self.upper

    @property
    def accepts_h0(self) -> bool:
        return self.llr <= self.lower


def sprt(successes: int, n: int, p0: float, p1: float, alpha: float, beta: float) -> Sprt:
    """The sequential test of H0 (accuracy ``p0``) against H1 (``p1`` < ``p0``) on ``successes`` of ``n``.

    The boundaries are ``log(1 / alpha)`` and ``log(beta)``: the likelihood ratio is a
    nonnegative supermartingale under any accuracy at or above ``p0`` (and its inverse
    under any at or below ``p1``), so Ville's inequality bounds the chance of ever
    crossing, which is what makes the test safe to look at every poll.
    """
    _check(successes, n, 0.5)
    if not 0 < p1 < p0 < 1:
        raise ValueError(f"the test needs 0 < p1 < p0 < 1, got p0={p0}, p1={p1}")
    if not (0 < alpha < 1 and 0 < beta < 1):
        raise ValueError(f"alpha and beta must be between 0 and 1, got {alpha}, {beta}")
    llr = successes * math.log(p1 / p0) + (n - successes) * math.log((1 - p1) / (1 - p0))
    return Sprt(p0, p1, n, successes, llr, math.log(1 / alpha), math.log(beta))
