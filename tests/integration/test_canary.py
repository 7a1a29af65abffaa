"""The progressive canary against real nginx and gunicorn: shares under keep-alive load, rollback to 0%."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tests.helpers import ClientThreads, Stack, wait_until

pytestmark = pytest.mark.integration

# Short steps under 8 clients: a few hundred requests reach the canary at 10%. It does not
# wait for labels, and its error and slow-request limits are ones those requests can show.
CANARY_BAKE = """
[bake]
period = 4.0
interval = 0.5
failure_limit = 1
min_requests = 50
require_labels = false
max_error_rate = 0.05
max_slow_rate = 0.05
"""
ROW = {"x": [5.9, 3.0, 5.1, 1.8]}
MARGIN = 0.15  # seconds around a share change in which an answer may belong to either share


class Clients(ClientThreads):
    """Keep-alive clients posting predictions; each answer kept with its time and color."""

    def __init__(self, url: str, clients: int = 8):
        self.url = url + "/predict"
        self.answers: list[tuple[float, str]] = []   # (time.monotonic(), color)
        self.failures: list[str] = []
        super().__init__(clients)

    def _client(self):
        with requests.Session() as session:
            while not self.stop_event.is_set():
                try:
                    response = session.post(self.url, json=ROW, timeout=10)
                    body = response.json()
                    ok = response.status_code == 200 and "prediction" in body
                    outcome = body["color"] if ok else f"HTTP {response.status_code}: {body}"
                except Exception as exc:  # every failure is counted, never raised
                    ok, outcome = False, f"{type(exc).__name__}: {exc}"
                with self.lock:
                    (self.answers.append((time.monotonic(), outcome)) if ok else self.failures.append(outcome))


def share(stack) -> tuple[int, bool]:
    """(the canary markers for green, whether green is the active color) as nginx reads them."""
    names = os.listdir(stack.run_dir / "nginx" / "canary") if (stack.run_dir / "nginx" / "canary").exists() else []
    return sum(n.startswith("green-b") for n in names), (stack.run_dir / "nginx" / "active-green").exists()


def watch_shares(stack, process) -> list[tuple[float, int]]:
    """The share green had (100 once it is active), sampled until ``process`` ends."""
    marks = []
    while process.poll() is None:
        count, active = share(stack)
        now = 100 if active else count
        if not marks or marks[-1][1] != now:
            marks.append((time.monotonic(), now))
        time.sleep(0.01)
    marks.append((time.monotonic(), -1))
    return marks


def observed(answers, marks) -> dict[int, tuple[int, int]]:
    """Per share: (answers from green, answers) well inside the time that share held."""
    seen: dict[int, list[int]] = {}
    for (start, weight), (end, _) in zip(marks, marks[1:]):
        inside = [color for t, color in answers if start + MARGIN < t < end - MARGIN]
        counts = seen.setdefault(weight, [0, 0])
        counts[0] += sum(color == "green" for color in inside)
        counts[1] += len(inside)
    return {weight: (green, total) for weight, (green, total) in seen.items()}


@pytest.fixture
def stack(models_dir, tmp_path):
    with Stack(tmp_path, models_dir, CANARY_BAKE) as stack:
        yield stack


def test_a_canary_moves_10_50_100_under_keep_alive_load_without_a_failed_request(stack):
    with Clients(stack.front, 8) as clients:
        deploy = stack.popen("deploy", "v1.1.0", "--canary", "10,50,100", "--step-seconds", "4", "--json")
        marks = watch_shares(stack, deploy)
    out, err = deploy.communicate()
    result = json.loads(out)
    assert deploy.returncode == 0 and result["outcome"] == "promoted", err
    assert clients.failures == []
    shares = observed(clients.answers, marks)
    for weight in (10, 50, 100):
        green, total = shares[weight]
        assert total > 300, shares
        assert abs(100 * green / total - weight) <= 5, (weight, green, total)
    assert [s["weight"] for s in result["canary"]] == [10, 50]
    assert result["exposure"] > 0
    history = stack.history()
    steps = [(e["outcome"], e["weight"]) for e in history if e["action"] == "canary"]
    assert steps == [("step", 10), ("passed", 10), ("step", 50), ("passed", 50), ("step", 100)]
    status = stack.status()
    assert status["active"] == "green" and status["stable"] == "v1.1.0"
    assert status["rollout"]["weight"] == 100 and status["canary"]["weight"] == 0
    print("\ncanary shares observed: " + ", ".join(f"{w}%: {100 * shares[w][0] / shares[w][1]:.1f}% of "
                                                  f"{shares[w][1]}" for w in (10, 50, 100)))


def test_a_canary_that_breaks_is_rolled_back_at_the_first_step_with_its_exposure(stack):
    with Clients(stack.front, 8) as clients:
        deploy = stack.popen("deploy", "v1.1.0", "--canary", "10,50,100", "--step-seconds", "6", "--json")
        wait_until(lambda: share(stack)[0] == 10, timeout=60, what="the 10% step")
        time.sleep(1.0)
        # The new version crashes in production: every process of its color dies at once.
        stack.kill_color("green")
        out, err = deploy.communicate(timeout=60)
    result = json.loads(out)
    assert deploy.returncode == 1 and result["outcome"] == "rolled-back", err
    assert [s["weight"] for s in result["canary"]] == [10] and result["canary"][0]["verdict"] == "fail"
    assert share(stack) == (0, False)
    exposure = result["exposure"]
    green = sum(color == "green" for _, color in clients.answers)
    # What reached the new version: what it answered (all of it at 10%) and what nginx had
    # to send on to blue for it in the step; users saw no failure (blue answered those).
    assert green <= exposure <= green + 0.2 * len(clients.answers)
    assert 0 < green < 0.15 * len(clients.answers)
    assert clients.failures == []
    assert f"{exposure} requests" in err
    status = stack.status()
    assert status["active"] == "blue" and "v1.1.0" in [e.get("version") for e in stack.history()
                                                          if e["action"] == "canary"]
    print(f"\nbroken canary: exposure {exposure} requests ({green} answered by it) of {len(clients.answers)}")
