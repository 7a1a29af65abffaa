"""`bluegreen dashboard` in a real browser (headless Chromium) on a real stack (gunicorn and nginx).

One page stays open the whole time: it must follow the stack by itself, without a reload.
Screenshots of the idle stack and of a running bake go to reports/ (docs/images/ keeps one
for the README).
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from app.artifacts.fsutil import atomic_write_json
from tests.browser import Chromium
from tests.helpers import ROOT, Stack, Traffic, free_port, wait_until

pytestmark = pytest.mark.integration

REPORTS = ROOT / "reports"
# A short bake that can pass without labels, polled often enough for the chart to grow.
SETTINGS = """
[dashboard]
port = {port}
refresh = 0.3

[bake]
period = 5.0
interval = 0.5
min_requests = 20
require_labels = false
"""


def page_shows_window(browser: Chromium, window_file) -> list[str] | None:
    """The checks the page shows, when they are those of the window the controller last wrote."""
    wanted = [check["name"] for check in json.loads(window_file.read_text())["checks"]]
    names = browser.evaluate("[...document.querySelectorAll('.check')].map(c => c.dataset.check)")
    return names if names == wanted and names else None


def start_dashboard(stack: Stack, port: int):
    """The dashboard on ``port``; on another free port when a process of a parallel test took
    that one between its choice and the dashboard's bind (said in one line, exit 1)."""
    for _ in range(3):
        process = stack.popen("dashboard")
        url = f"http://127.0.0.1:{port}/"

        def answers(process=process, url=url) -> bool:  # or has exited
            if process.poll() is not None:
                return True
            return requests.get(url + "api/state", timeout=5).status_code == 200

        wait_until(answers, 30, what="the dashboard to answer")
        if process.poll() is None:
            return process, url
        err = process.communicate()[1]
        assert process.returncode == 1 and err.count("\n") == 1, err
        assert f"the dashboard cannot listen on 127.0.0.1:{port}: Address already in use" in err, err
        config = stack.config.read_text()
        port = free_port()
        stack.config.write_text(re.sub(r"(?m)^(\[dashboard\]\nport = )\d+", rf"\g<1>{port}", config))
    raise AssertionError("the dashboard found no free port in three tries")


def stop(process) -> str:
    process.terminate()
    out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with Chromium(tmp_path_factory.mktemp("chromium")) as browser:
        yield browser


def test_the_page_follows_the_stack_without_a_reload(shipped_models, tmp_path, browser):
    port = free_port()
    with Stack(tmp_path, shipped_models, extra_toml=SETTINGS.format(port=port)) as stack:
        process, url = start_dashboard(stack, port)
        try:
            browser.open(url)
            browser.wait_for("document.getElementById('stack').textContent === 'stack up'", what="the stack up")
            assert browser.text("active-color") == "blue" and browser.text("active-version") == "v1.0.0"
            assert browser.text("version-blue") == "v1.0.0" and browser.text("version-green") == "v1.1.0"
            assert browser.text("phase") == "idle"
            assert "up" in [row.split("\t")[1] for row in browser.evaluate(
                "[...document.querySelectorAll('#history tr')].map(r => r.innerText)")]
            browser.screenshot(REPORTS / "dashboard-idle.png")

            # A switch from the command line: the open page shows it by itself.
            browser.evaluate("window.sameDocument = 'yes'")
            stack.cli("switch", "green")
            browser.wait_for("document.getElementById('active-color').textContent === 'green'", 5,
                             what="the page to show green active")
            assert browser.text("active-version") == "v1.1.0"
            assert browser.evaluate("window.sameDocument") == "yes"  # the page was not reloaded
            stack.cli("switch", "blue")
            browser.wait_for("document.getElementById('active-color').textContent === 'blue'", 5)

            # A deploy: the page shows its phases as they come, and during the bake the judged
            # window the controller writes at every poll (<run_dir>/window.json): a chart per check.
            window_file = stack.run_dir / "window.json"
            with Traffic(stack.front, clients=2):
                deploy = stack.popen("deploy", "v1.1.0")
                seen, shown, baking_since, shot = set(), None, None, False
                deadline = time.monotonic() + 60
                while deploy.poll() is None and time.monotonic() < deadline:
                    seen.add(browser.text("phase"))
                    if "baking" in seen and baking_since is None:
                        baking_since = time.monotonic()
                    if "baking" in seen and shown is None and window_file.exists():
                        shown = wait_until(lambda: page_shows_window(browser, window_file), 5,
                                           what="the page to show the judged window's checks")
                    if not shot and shown and baking_since and time.monotonic() - baking_since > 3:
                        browser.screenshot(REPORTS / "dashboard-bake.png")  # a few polls into the bake
                        shot = True
                    time.sleep(0.05)
                out, err = deploy.communicate(timeout=60)
            assert deploy.returncode == 0, out + err
            assert "baking" in seen and shot, seen
            assert shown and "error rate" in shown, shown  # the window the controller wrote during the bake
            assert int(browser.evaluate("document.querySelector('.check svg').dataset.points")) >= 2
            browser.wait_for("document.getElementById('phase').textContent === 'promoted'", 10,
                             what="the deploy's end")
            assert browser.text("active-color") == "green"
            assert browser.evaluate("window.sameDocument") == "yes"

            # The stack goes down: the page says so and keeps asking.
            stack.down()
            browser.wait_for("document.getElementById('stack').textContent === 'stack down'", 10,
                             what="the page to say the stack is down")
            assert "the stack is down" in browser.text("stack-message")
        finally:
            stop(process)


def window_doc(polls: int, started: float) -> dict:
    """A judged window as the controller writes it, after ``polls`` polls of a bake."""
    return {"kind": "bake", "rollout": "r1", "color": "green", "version": "v1.1.0",
            "stable": {"color": "blue", "version": "v1.0.0"}, "started": started, "updated": started + 2 * polls,
            "period": 30.0, "polls": polls, "verdict": "inconclusive", "reason": f"poll {polls}", "ended": False,
            "checks": [{"name": "error rate", "verdict": "inconclusive", "n": 40 * polls, "needed": 50,
                        "estimate": 0.001, "low": 0.0, "high": 0.4 / polls, "limit": 0.01, "direction": "below"},
                       {"name": "live accuracy", "verdict": "inconclusive", "n": 3 * polls, "needed": 20,
                        "estimate": 0.9, "low": 0.9 - 0.3 / polls, "high": 1.0, "limit": 0.8, "direction": "above"}]}


def test_with_the_stack_down_the_page_says_so_and_draws_each_poll_of_a_window(shipped_models, tmp_path, browser):
    port = free_port()
    stack = Stack(tmp_path, shipped_models, extra_toml=SETTINGS.format(port=port))  # never started
    process, url = start_dashboard(stack, port)
    try:
        state = requests.get(url + "api/state", timeout=5).json()
        assert state["stack"]["state"] == "down" and state["window"] is None
        browser.open(url)
        browser.wait_for("document.getElementById('stack').textContent === 'stack down'", 10)
        assert browser.text("stack-message") == ("the stack is down: nginx is not running (run `bluegreen up`), "
                                                 "and no color answers")
        assert browser.text("phase") == "idle" and browser.text("history") == ""
        browser.evaluate("window.sameDocument = 'yes'")
        started = time.time()
        for polls in range(1, 5):
            atomic_write_json(stack.run_dir / "window.json", window_doc(polls, started))
            browser.wait_for(f"document.getElementById('window-reason').textContent === 'poll {polls}'", 5)
            points = browser.evaluate("[...document.querySelectorAll('.check svg')].map(s => +s.dataset.points)")
            assert points == [polls, polls]  # each chart grew by this poll, on the same page
        assert browser.text("window-summary").startswith("bake of green (v1.1.0) against blue (v1.0.0): 4 polls")
        checks = browser.evaluate("[...document.querySelectorAll('.check')].map(c => c.innerText)")
        assert "needs 8 more (12 of 20)" in checks[1]
        assert browser.evaluate("document.querySelectorAll('.check polygon, .check line.limit').length") == 4
        assert browser.evaluate("window.sameDocument") == "yes"
    finally:
        assert "dashboard of http://127.0.0.1:" in stop(process)
