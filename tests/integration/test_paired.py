"""Rollout decisions without labels, against real nginx and gunicorn (docs/adr/0014).

During every judged window nginx sends a copy of the requests one color answers to the
other, through its relay; both colors keep their answers and the controller pairs them by
request id. These tests send no labels unless they say so: the new version is judged on how
its answers compare with the stable version's on the same requests.
"""

from __future__ import annotations

import itertools
import json
import time

import joblib
import numpy as np
import pytest
import requests
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

from app.training.data import iris_split
from tests.helpers import ClientThreads, Stack, Traffic, wait_until

pytestmark = pytest.mark.integration

# Sepal length above 7.2: eight training flowers (all virginica) and none of the holdout's.
REGION = 7.2


class PacedClients(ClientThreads):
    """Clients that each post ``rate`` predictions a second, cycling through ``rows``; with
    ``labels``, each also sends ``label_rate`` labelled feedbacks a second naming the request
    id of a prediction it made (the feedback a user's label pipeline would send)."""

    def __init__(self, stack, rows, clients: int = 4, rate: float = 5.0, labels=None, label_rate: float = 0.0):
        self.url, self.auth = stack.front, stack.feedback_auth()
        self.rows, self.labels, self.rate, self.label_rate = rows, labels, rate, label_rate
        self.sent, self.labelled, self.started, self.failures = 0, 0, 0, []
        self.versions: dict[str, int] = {}
        super().__init__(clients)

    def _client(self) -> None:
        with self.lock:
            offset, self.started = self.started, self.started + 1
        last_label = time.monotonic()
        with requests.Session() as session:
            for n in itertools.count():
                if self.stop_event.is_set():
                    return
                i = (offset + n * len(self.threads)) % len(self.rows)
                started = time.monotonic()
                try:
                    answer = session.post(self.url + "/predict", json={"x": list(self.rows[i])}, timeout=10)
                    body = answer.json()
                    failure = None if answer.status_code == 200 else f"HTTP {answer.status_code}: {body}"
                except Exception as exc:  # every failure is counted, not raised
                    body, failure = {}, f"{type(exc).__name__}: {exc}"
                label_due = bool(self.labels is not None and self.label_rate and not failure
                                 and time.monotonic() - last_label >= len(self.threads) / self.label_rate)
                if label_due:
                    last_label = time.monotonic()
                    session.post(self.url + "/feedback", headers=self.auth, timeout=10,
                                 json={"x": list(self.rows[i]), "label": self.labels[i],
                                       "request_id": body["request_id"]})
                with self.lock:
                    self.sent += 1
                    self.labelled += label_due
                    if failure:
                        self.failures.append(failure)
                    else:
                        self.versions[body["version"]] = self.versions.get(body["version"], 0) + 1
                self.stop_event.wait(max(0.0, 1 / self.rate - (time.monotonic() - started)))


def register(stack, model, version: str) -> dict:
    path = stack.dir / f"{version}.skops"
    skops.io.dump(model, path)
    return json.loads(stack.cli("register", version, str(path), "--json").stdout)


def deploy_events(stack) -> dict:
    return [e for e in stack.history() if e["action"] == "deploy"][-1]


# -- (a) a good version, no labels, the default settings -------------------------------------------
def test_a_default_deploy_of_a_good_version_is_promoted_without_labels_at_a_small_services_traffic(
        models_dir, tmp_path):
    _, x_test, *_ = iris_split()  # flowers neither version was trained on
    with Stack(tmp_path, models_dir) as stack, PacedClients(stack, x_test, clients=4, rate=5.0) as clients:
        started = time.monotonic()
        result = stack.cli("deploy", "v1.1.0", "--json", check=False, timeout=300)
        took = time.monotonic() - started
    outcome = json.loads(result.stdout)
    print(f"\ndefault deploy of v1.1.0 at ~20 requests/s, no labels: {outcome['outcome']} in {took:.0f}s; "
          f"{clients.sent} requests, {len(clients.failures)} failed")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome["outcome"] == "promoted" and clients.failures == []
    switched = next(s["seconds"] for s in outcome["steps"] if s["step"].startswith("switch "))
    baked = next(s["seconds"] for s in outcome["steps"] if s["step"] == "bake")
    assert baked - switched <= 120  # within two minutes of the switch
    numbers = deploy_events(stack)["bake"]["numbers"]
    assert numbers["labelled"] == 0 and numbers["paired_rows"] >= 50
    assert numbers["llr"] <= numbers["llr_pass"] and numbers["error_rate_high"] <= 0.01


# -- (b) a version that answers differently on a region of the live inputs --------------------------
def test_a_version_that_disagrees_on_live_inputs_is_rolled_back_during_the_bake(models_dir, tmp_path):
    x_train, _, y_train, _, _ = iris_split()
    relabelled = y_train.copy()
    relabelled[x_train[:, 0] > REGION] = 0  # the biggest flowers called setosa: no holdout row is one
    with Stack(tmp_path, models_dir) as stack:
        card = register(stack, DecisionTreeClassifier(random_state=0).fit(x_train, relabelled), "v2.0.0")
        assert card["metrics"]["accuracy"] >= 0.95  # the holdout sees nothing wrong: the gates pass
        region, elsewhere = x_train[x_train[:, 0] > REGION], x_train[x_train[:, 0] <= REGION]
        live = np.vstack([region, elsewhere[:len(region)]])  # half of the live inputs from the region
        with PacedClients(stack, live, clients=4, rate=10.0) as clients:
            result = stack.cli("deploy", "v2.0.0", check=False, timeout=300)
    print(f"\nrelabelled region, half the live inputs in it: exit {result.returncode}; {clients.sent} requests, "
          f"{len(clients.failures)} failed\n{result.stderr}")
    assert result.returncode == 1
    assert "gate: smoke evaluation through the preview door: passed" in result.stdout
    # The paired checks see it first: another class on the region's rows, for the disagreement
    # test, and the share of setosa moving, for the class shares (whichever decides first).
    assert "rolled back: disagreement: " in result.stderr or "rolled back: class shares: " in result.stderr
    assert "green (v2.0.0)" in result.stderr and "blue (v1.0.0)" in result.stderr
    assert clients.failures == []
    deploy = deploy_events(stack)
    assert deploy["outcome"] == "rolled-back" and deploy["reason"].startswith(("disagreement: ", "class shares: "))
    numbers = deploy["bake"]["numbers"]
    assert numbers["disagreement"] > 0.3 and numbers["paired_rows"] >= 50  # half the inputs are in the region
    assert numbers["class_shift"]["setosa"] > 0.3
    assert stack.status()["active"] == "blue" and "v2.0.0" in json.loads(
        (stack.run_dir / "state.json").read_text())["rejected"]


# -- (e) a version far less accurate on live inputs, labels at 1 a second ---------------------------
def test_a_one_nearest_neighbour_model_far_less_accurate_on_live_inputs_is_rolled_back(models_dir, tmp_path):
    x_train, x_test, y_train, y_test, _ = iris_split()
    rng = np.random.default_rng(7)
    wrong = y_train.copy()
    flip = rng.random(len(wrong)) < 0.3
    wrong[flip] = (wrong[flip] + 1) % 3
    # It remembers the holdout exactly (100% there) and a third of the other flowers wrongly.
    knn = KNeighborsClassifier(n_neighbors=1).fit(np.vstack([x_test, x_train]), np.concatenate([y_test, wrong]))
    with Stack(tmp_path, models_dir) as stack:
        card = register(stack, knn, "v2.0.0")
        assert card["metrics"]["accuracy"] >= 0.97
        names = card["class_names"]
        with PacedClients(stack, x_train, clients=4, rate=5.0, labels=[names[y] for y in y_train],
                          label_rate=1.0) as clients:
            result = stack.cli("deploy", "v2.0.0", check=False, timeout=300)
    print(f"\n1-NN with a third of the live flowers wrong: exit {result.returncode}; {clients.sent} requests, "
          f"{clients.labelled} labelled, {len(clients.failures)} failed\n{result.stderr}")
    assert result.returncode == 1 and "rolled back: " in result.stderr
    assert clients.failures == []
    deploy = deploy_events(stack)
    assert deploy["outcome"] == "rolled-back"
    switched = next(e for e in stack.history() if e["action"] == "switch" and e.get("to_version") == "v2.0.0")
    rollback = [e for e in stack.history() if e["action"] == "rollback"][-1]
    assert rollback["to_version"] == "v1.0.0"
    assert _seconds(rollback["time"]) - _seconds(switched["time"]) <= 30  # within the default bake


# -- (f) a pipeline that fails on some live inputs -----------------------------------------------
def test_a_pipeline_that_fails_on_a_third_of_the_live_inputs_is_rolled_back_its_failures_its_own_5xx(
        models_dir, tmp_path):
    x_train, _, y_train, _, _ = iris_split()
    # log of the input: -inf at 0, NaN below; the holdout (all positive) sees nothing wrong.
    pipeline = make_pipeline(FunctionTransformer(np.log), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    rows = [list(r) for r in x_train[:20]] + [[0, 0, 0, 0]] * 5 + [[-1, 3, 4.2, 1.5]] * 5
    with Stack(tmp_path, models_dir) as stack:
        artifact = stack.dir / "log.joblib"
        joblib.dump(pipeline, artifact)
        card = json.loads(stack.cli("register", "v2.0.0", str(artifact), "--trust-pickle", "--json").stdout)
        assert card["metrics"]["accuracy"] >= 0.9  # the holdout gates pass
        for row in rows[20:22]:  # the stable version answers these
            assert requests.post(stack.front + "/predict", json={"x": row}).status_code == 200
        with PacedClients(stack, rows, clients=4, rate=5.0) as clients:
            result = stack.cli("deploy", "v2.0.0", check=False, timeout=300)
        errors = [f for f in clients.failures if f.startswith("HTTP 5")]
    print(f"\nlog pipeline, a third of the live inputs 0 or negative: exit {result.returncode}; {clients.sent} "
          f"requests, {len(clients.failures)} failed\n{result.stderr}")
    assert result.returncode == 1 and "rolled back: " in result.stderr
    # What its users saw while it served: the model's own 500, naming it, never a 400.
    assert errors and all("HTTP 500" in f and "model iris v2.0.0" in f for f in errors), clients.failures[:3]
    assert not [f for f in clients.failures if f.startswith("HTTP 4")]
    deploy = deploy_events(stack)
    assert deploy["outcome"] == "rolled-back"
    # Judged on its own 5xx (error rate) or on the paired requests the stable version answered.
    assert "error rate" in deploy["reason"] or " failed " in deploy["reason"], deploy["reason"]
    numbers = deploy["bake"]["numbers"]
    assert (numbers.get("error_rate") or 0) > 0.1 or (numbers.get("paired_failed") or 0) > 0, numbers
    assert stack.status()["active"] == "blue"


def _seconds(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


# -- (c) an undecided canary step pauses; promote moves it on; abort ends it ------------------------
# Steps of 3 s that could only decide on 100,000 requests: every window is undecided.
UNDECIDED = """
[bake]
period = 3.0
interval = 0.5
max_period = 3.0
min_requests = 100000
pause_timeout = 120.0
"""


def test_an_undecided_canary_step_pauses_promote_moves_it_on_and_abort_ends_it(models_dir, tmp_path):
    with Stack(tmp_path, models_dir, UNDECIDED) as stack, Traffic(stack.front, clients=4) as traffic:
        deploy = stack.popen("deploy", "v1.1.0", "--canary", "20,100")
        wait_until(lambda: stack.status()["phase"] == "paused", 60, what="the first step to pause")
        status = stack.status()
        assert status["canary"] == {"color": "green", "weight": 20}  # the share stays while paused
        assert "of the 100000 requests needed before a verdict" in status["rollout"]["judgment"]["reason"]
        printed = stack.cli("status").stdout
        assert "phase: paused" in printed and "undecided: " in printed
        assert "`bluegreen promote --reason TEXT`" in printed
        promoted = stack.cli("promote", "--reason", "the step looked fine")
        assert "asked the deploy of v1.1.0" in promoted.stdout
        wait_until(lambda: stack.status()["rollout"]["weight"] == 100, 60, what="the switch after the promote")
        wait_until(lambda: stack.status()["phase"] == "paused", 60, what="the bake to pause")
        assert stack.front_color() == "green"
        aborted = stack.cli("abort")
        assert "aborted the rollout of v1.1.0: traffic on blue (v1.0.0)" in aborted.stdout
        out, err = deploy.communicate(timeout=60)
        assert deploy.returncode == 1, out + err
        actions = [(e["action"], e["outcome"]) for e in stack.history()]
        assert ("promote", "requested") in actions and ("promote", "succeeded") in actions
        assert actions[-1] == ("deploy", "aborted")
        assert stack.status()["phase"] == "aborted" and stack.front_color() == "blue"
    assert traffic.failures == []
