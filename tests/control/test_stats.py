"""The bake's statistics: bounds that hold however often they are looked at, and the sequential test."""

from __future__ import annotations

import math
import random

import pytest

from app.control import stats


def test_with_no_trials_nothing_is_known():
    bounds = stats.anytime_interval(0, 0, 0.99)
    assert (bounds.low, bounds.high) == (0.0, 1.0) and math.isnan(bounds.estimate)


@pytest.mark.parametrize("successes, n", [(0, 12), (2, 12), (45, 50), (950, 1000), (1000, 1000), (1, 100_000)])
def test_the_anytime_bounds_surround_the_estimate(successes, n):
    bounds = stats.anytime_interval(successes, n, 0.99)
    assert bounds.low <= bounds.estimate <= bounds.high
    assert 0.0 <= bounds.low < bounds.high <= 1.0


def test_no_failure_means_a_lower_bound_of_zero_and_no_success_an_upper_bound_of_one():
    assert stats.anytime_interval(0, 200, 0.99).low == 0.0
    assert stats.anytime_interval(200, 200, 0.99).high == 1.0


def test_the_bounds_narrow_as_samples_grow_and_widen_with_confidence():
    widths = [stats.anytime_interval(9 * n // 10, n, 0.99) for n in (50, 500, 5000)]
    assert widths[0].high - widths[0].low > widths[1].high - widths[1].low > widths[2].high - widths[2].low
    assert stats.anytime_interval(90, 100, 0.999).low < stats.anytime_interval(90, 100, 0.9).low


def test_zero_errors_in_1000_requests_shows_an_error_rate_below_one_percent_but_200_do_not():
    assert stats.anytime_interval(0, 1000, 0.99).high < 0.01
    assert stats.anytime_interval(0, 200, 0.99).high > 0.03


def test_looking_after_every_sample_costs_width_against_a_single_look():
    anytime, once = stats.anytime_interval(90, 100, 0.99), stats.wilson_interval(90, 100, 0.99)
    assert anytime.low < once.low and anytime.high > once.high


def _ever_outside(interval, p: float, sequences: int, length: int, seed: int) -> float:
    """The share of sequences of ``length`` draws whose bounds, checked after every draw,
    ever exclude the true ``p``."""
    rng = random.Random(seed)
    missed = 0
    for _ in range(sequences):
        successes = 0
        for n in range(1, length + 1):
            successes += rng.random() < p
            bounds = interval(successes, n, 0.99)
            if not bounds.low <= p <= bounds.high:
                missed += 1
                break
    return missed / sequences


def test_anytime_bounds_keep_their_confidence_when_checked_after_every_sample():
    assert _ever_outside(stats.anytime_interval, 0.9, sequences=400, length=400, seed=1) <= 0.01


def test_a_fixed_interval_checked_after_every_sample_misses_far_more_often_than_it_says():
    assert _ever_outside(stats.wilson_interval, 0.9, sequences=400, length=400, seed=1) > 0.05


@pytest.mark.parametrize("successes, n, confidence, low, high", [
    (8, 10, 0.95, 0.4902, 0.9433),     # the textbook example
    (44, 45, 0.99, 0.8354, 0.9974),    # a 45-row holdout with one miss
])
def test_the_wilson_interval(successes, n, confidence, low, high):
    bounds = stats.wilson_interval(successes, n, confidence)
    assert (round(bounds.low, 4), round(bounds.high, 4)) == (low, high)


@pytest.mark.parametrize("successes, n", [(-1, 10), (11, 10), (0, -1)])
def test_a_count_that_is_not_a_sample_is_refused(successes, n):
    with pytest.raises(ValueError, match="is not a sample"):
        stats.anytime_interval(successes, n, 0.99)


def test_the_sequential_test_boundaries_are_set_by_alpha_and_beta():
    test = stats.sprt(0, 0, 0.93, 0.85, 0.005, 0.01)
    assert (test.upper, test.lower) == (pytest.approx(math.log(200)), pytest.approx(math.log(0.01)))
    assert test.llr == 0 and not test.accepts_h0 and not test.accepts_h1


def test_the_sequential_test_accepts_worse_on_many_misses_and_as_good_on_many_hits():
    assert stats.sprt(170, 200, 0.93, 0.865, 0.005, 0.005).accepts_h1
    assert stats.sprt(190, 200, 0.93, 0.865, 0.005, 0.005).accepts_h0
    undecided = stats.sprt(45, 50, 0.93, 0.865, 0.005, 0.005)
    assert not undecided.accepts_h0 and not undecided.accepts_h1


def test_the_sequential_test_errs_no_more_than_alpha_however_long_it_runs():
    rng = random.Random(2)
    wrong = 0
    for _ in range(300):
        successes = 0
        for n in range(1, 1001):
            successes += rng.random() < 0.93  # exactly H0
            if stats.sprt(successes, n, 0.93, 0.865, 0.01, 0.01).accepts_h1:
                wrong += 1
                break
    assert wrong / 300 <= 0.01


@pytest.mark.parametrize("p0, p1", [(0.8, 0.9), (0.9, 0.9), (1.0, 0.9), (0.9, 0.0)])
def test_the_sequential_test_needs_h1_below_h0(p0, p1):
    with pytest.raises(ValueError, match="needs 0 < p1 < p0 < 1"):
        stats.sprt(5, 10, p0, p1, 0.01, 0.01)
