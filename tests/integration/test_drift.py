"""`bluegreen drift` against real servers: unshifted traffic passes, a shifted feature is flagged.

Blue (the front door) gets rows drawn from the whole iris data set; green (the preview
door) gets the same kind of rows with petal length moved up by two training standard
deviations. Each color's prediction log keeps its default 10% sample; batches of 100 rows
give each a few hundred logged rows in a second. The HTML report opens in headless Chromium.
"""

from __future__ import annotations

import json
import random

import pytest
import requests
from sklearn.datasets import load_iris

from tests.browser import Chromium
from tests.helpers import ROOT, Stack

pytestmark = pytest.mark.integration

SHIFTED = "petal length (cm)"


def send(url: str, rows: list[list[float]], batch: int = 100) -> None:
    with requests.Session() as session:
        for i in range(0, len(rows), batch):
            answer = session.post(url + "/predict", json={"instances": rows[i:i + batch]}, timeout=10)
            assert answer.status_code == 200, answer.text


def test_drift_flags_a_shifted_feature_and_passes_unshifted_traffic(shipped_models, tmp_path):
    card = json.loads((shipped_models / "iris_model_v1.0.0.json").read_text())
    column = card["feature_names"].index(SHIFTED)
    shift = 2 * card["training_stats"][SHIFTED]["std"]
    rng = random.Random(11)
    iris = load_iris().data.tolist()
    unshifted = [list(rng.choice(iris)) for _ in range(6000)]
    shifted = [row[:column] + [row[column] + shift] + row[column + 1:] for row in
               (list(rng.choice(iris)) for _ in range(6000))]
    with Stack(tmp_path, shipped_models) as stack:
        send(stack.front, unshifted)
        send(stack.preview, shifted)
        assert requests.get(stack.front + "/prediction-log", timeout=5).status_code == 404  # never through a door

        passed = stack.cli("drift", "--json", check=False)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        report = json.loads(passed.stdout)
        assert (report["color"], report["version"], report["verdict"]) == ("blue", "v1.0.0", "no drift")
        assert 400 <= report["rows"] <= 800  # about 10% of 6,000
        assert {f["verdict"] for f in report["features"]} <= {"stable", "moderate"}
        assert report["classes"]["verdict"] != "drift"

        html = tmp_path / "drift.html"
        flagged = stack.cli("drift", "--color", "green", "--since", "10m", "--html", str(html), check=False)
        assert flagged.returncode == 1, flagged.stdout + flagged.stderr
        assert flagged.stderr.strip().startswith(f"bluegreen: drift: drift in {SHIFTED}")
        lines = {line.split("  ")[0].strip(): line for line in flagged.stdout.splitlines()}
        assert lines[SHIFTED].split()[3] == "drift"
        for other in card["feature_names"]:
            if other != SHIFTED:
                assert lines[other].split()[3] in ("stable", "moderate"), lines[other]

    # The report opens by itself, with one plot per feature, in a browser without the stack.
    with Chromium(tmp_path / "chromium") as browser:
        browser.open(html.as_uri())
        figures = browser.evaluate("[...document.querySelectorAll('figure.feature')].map(f => "
                                   "[f.dataset.feature, f.dataset.verdict, f.querySelectorAll('svg rect').length])")
        assert [f[0] for f in figures] == card["feature_names"]
        assert {f[0]: f[1] for f in figures}[SHIFTED] == "drift"
        assert all(bars > 0 for _, _, bars in figures)
        resources = browser.evaluate("performance.getEntriesByType('resource').length")
        assert resources == 0  # nothing fetched
        browser.screenshot(ROOT / "reports" / "drift-report.png")
