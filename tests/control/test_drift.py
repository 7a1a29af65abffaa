"""The drift report's statistics and verdicts, with the standard library only.

Values the tests check the statistics against were computed with SciPy (``scipy.stats``)
when these tests were written; the controller itself never imports it.
"""

from __future__ import annotations

import math
import random
import re

import pytest

from app.control import distributions as dist
from app.control.config import DriftSettings
from app.control.drift import build_report, describe, parse_duration, training_values
from app.control.drift_html import render_html
from app.errors import ControllerError

NAMES = ["a", "b"]
CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(("lam", "expected"), [
    (0.5, 0.9639452436648751), (0.8, 0.544142411574198), (1.0, 0.26999967167735456),
    (1.36, 0.049485876755377876), (1.5, 0.022217962616525127), (2.0, 0.0006709252557796953), (0.0, 1.0),
])
def test_the_kolmogorov_tail_is_scipys(lam, expected):
    assert dist.kolmogorov_sf(lam) == pytest.approx(expected, abs=2e-5)


@pytest.mark.parametrize(("x", "df", "expected"), [
    (3.841458820694124, 1, 0.05), (5.991464547107979, 2, 0.05), (1.7142857142857144, 2, 0.42437284567695),
    (11.344866730144373, 3, 0.01), (30.0, 9, 0.00043872177097947936), (0.5, 5, 0.9921232932326296),
])
def test_the_chi_square_tail_is_scipys(x, df, expected):
    assert dist.chi2_sf(x, df) == pytest.approx(expected, rel=1e-9)


def test_the_ks_statistic_is_the_largest_gap_between_the_two_distribution_functions():
    assert dist.ks_statistic([1, 2, 3, 4], [1, 2, 3, 4]) == 0
    assert dist.ks_statistic([1, 2, 3, 4], [5, 6, 7, 8]) == 1
    assert dist.ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5
    assert dist.ks_statistic([1, 1, 1, 2], [1, 2, 2, 2]) == 0.5  # ties are stepped over together
    random.seed(1)
    a = sorted(random.gauss(0, 1) for _ in range(105))
    b = sorted(random.gauss(0.3, 1) for _ in range(500))
    d, p = dist.ks_two_sample(b, a)
    assert d == pytest.approx(0.1905714285714286) and p == pytest.approx(0.00306, abs=2e-5)


def test_psi_bins_are_cut_at_the_training_quantiles():
    values = [float(v) for v in range(1, 101)]
    assert dist.quantile_cuts(values, 4) == [25.75, 50.5, 75.25]  # numpy's linear quantiles
    assert dist.quantile_cuts([1.0, 1.0, 1.0, 2.0, 3.0], 5) == [1.0, 1.4, 2.2]  # tied cuts merge
    assert dist.bin_counts([2.0, 4.0], [1, 2, 3, 4, 5]) == [1, 2, 2]  # a value on a cut goes up
    same = dist.shares([10, 20, 30])
    assert dist.psi(same, same) == 0
    assert dist.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2))
    assert dist.psi([0.5, 0.5], [1.0, 0.0]) < math.inf  # an empty bin is floored, not infinite


def test_two_class_counts_from_one_distribution_are_homogeneous():
    statistic, df, p = dist.homogeneity([10, 20, 30], [15, 15, 30])
    assert (round(statistic, 6), df) == (1.714286, 2) and p == pytest.approx(0.42437284567695)
    assert dist.homogeneity([10, 0, 5], [10, 0, 5])[1] == 1  # a class empty on both sides is left out


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400),
                                               ("45", 45), ("0.5h", 1800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-5m", "0s", "5 minutes", "1w"])
def test_durations_that_are_not(text):
    with pytest.raises(ControllerError, match="expected a duration such as 30s, 15m, 2h or 1d"):
        parse_duration(text)


def card(training_rows: int = 105) -> dict:
    """A card whose two features were trained on standard normal values, classes a third each."""
    rng = random.Random(3)
    return {"version": "v9.0.0", "feature_names": NAMES, "class_names": CLASSES,
            "training_values": {n: sorted(rng.gauss(0, 1) for _ in range(training_rows)) for n in NAMES},
            "reference": {"labels": CLASSES * 15}}


def live(n: int, shift: float = 0.0, classes=CLASSES, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    return [{"t": 1.0, "x": [rng.gauss(0, 1), rng.gauss(0, 1) + shift], "y": classes[i % len(classes)]}
            for i in range(n)]


SETTINGS = DriftSettings()


def test_unshifted_traffic_is_no_drift():
    report = build_report(card(), "blue", live(600), 0.1, None, SETTINGS, 100.0)
    assert report.verdict == "no drift" and not report.drifted
    assert [f.verdict for f in report.features] == ["stable", "stable"]
    assert report.classes.verdict == "stable"
    for f in report.features:
        assert f.live_rows == 600 and f.training_rows == 105 and len(f.cuts) == 4  # quintiles of 105 rows
        assert f.psi < 0.1 and f.ks_p_value > report.settings["alpha_per_test"]


def test_a_feature_shifted_by_two_standard_deviations_drifts_and_the_others_stay():
    report = build_report(card(), "green", live(600, shift=2.0), 0.1, None, SETTINGS, 100.0)
    assert report.verdict == "drift" and report.drifted
    a, b = report.features
    assert a.verdict == "stable"
    assert b.verdict == "drift" and b.psi > 1 and b.ks_statistic > 0.6 and b.ks_p_value < 1e-20
    assert b.live_mean == pytest.approx(2.0, abs=0.15) and b.training_mean == pytest.approx(0.0, abs=0.2)
    assert report.reason == "drift in b"
    assert re.fullmatch(r"PSI \d\.\d{3} >= 0.25 and KS p [0-9.e-]+ < 0.0033 \(KS D 0\.\d{3}; PSI is about "
                        r"0\.045 without drift\)", b.reason)


def test_too_few_rows_is_no_verdict():
    report = build_report(card(), "blue", live(150, shift=2.0), 0.1, None, SETTINGS, 100.0)
    assert report.verdict == "inconclusive" and report.drifted  # never a pass: the command exits 1
    assert {f.verdict for f in report.features} == {"inconclusive"}
    assert report.features[1].reason == "150 live rows; a verdict needs at least 200"
    assert report.features[1].psi is None and report.features[1].live_rows == 150


def test_predicted_classes_unlike_the_holdouts_drift():
    report = build_report(card(), "blue", live(600, classes=["setosa"] * 8 + ["versicolor", "virginica"]), 0.1,
                          None, SETTINGS, 100.0)
    assert report.classes.verdict == "drift" and report.verdict == "drift"
    assert report.reason == "drift in the predicted classes"
    assert report.classes.live_shares[0] == pytest.approx(0.8)
    assert report.classes.holdout_shares == [1 / 3, 1 / 3, 1 / 3]


def test_rows_that_are_not_a_row_of_numbers_are_left_out():
    rows = live(300) + [{"x": [1.0]}, {"x": "no"}, {"x": [1.0, True]}, {"y": "setosa"}]
    assert build_report(card(), "blue", rows, None, None, SETTINGS, 100.0).rows == 300


def test_a_card_without_training_values_is_refused_in_one_line():
    old = {k: v for k, v in card().items() if k != "training_values"}
    with pytest.raises(ControllerError, match=r"the card of v9.0.0 has no training values .* run `make models`"):
        training_values(old)


def test_the_text_names_each_feature_its_verdict_and_numbers():
    text = describe(build_report(card(), "green", live(600, shift=2.0), 0.1, 50.0, SETTINGS, 100.0))
    lines = text.splitlines()
    assert lines[0].startswith("drift of green (v9.0.0): 600 live rows since ")
    assert lines[0].endswith(", 10% of served rows sampled, against 105 training rows")
    assert lines[2].split()[:2] == ["a", "stable"] and lines[3].split()[:2] == ["b", "drift"]
    assert lines[-1] == "verdict: drift: drift in b"


def test_the_html_report_has_a_plot_per_feature_and_fetches_nothing():
    html = render_html(build_report(card(), "green", live(600, shift=2.0), 0.1, None, SETTINGS, 100.0))
    assert html.count('<figure class="feature"') == 2 and html.count("<svg ") == 3  # and the classes'
    assert 'data-feature="b" data-verdict="drift"' in html and 'data-feature="a" data-verdict="stable"' in html
    assert not re.search(r"""(src|href)\s*=|@import|url\(|<script|<link""", html)
