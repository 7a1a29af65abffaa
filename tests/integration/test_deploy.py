"""Gated deploys, the bake and `watch`, against real nginx and gunicorn."""

from __future__ import annotations

import json
import time

import joblib
import pytest
import requests
import skops.io
from sklearn.dummy import DummyClassifier

from app.training.data import iris_split
from tests.helpers import Stack, Traffic, wait_until

pytestmark = pytest.mark.integration

# A 4-second bake under a few clients: a few hundred requests, no labels. It does not wait
# for labels (they can still fail it), and its error limit is one those requests can show.
# Undecided, it goes on for 4 s more at most while requests arrive, then pauses for 5 s.
FAST_BAKE = """
[bake]
period = 4.0
interval = 0.4
failure_limit = 1
min_labelled = 10
min_live_accuracy = 0.8
require_labels = false
max_error_rate = 0.05
max_period = 8.0
pause_timeout = 5.0
"""


@pytest.fixture
def stack(models_dir, tmp_path):
    with Stack(tmp_path, models_dir, FAST_BAKE) as stack:
        yield stack


def register_constant_model(stack, version="v2.0.0"):
    x_train, _, y_train, _, _ = iris_split()
    path = stack.dir / "constant.skops"
    skops.io.dump(DummyClassifier(strategy="most_frequent").fit(x_train, y_train), path)
    return stack.cli("register", version, str(path), "--json")


def test_a_good_version_is_promoted(stack):
    with Traffic(stack.front, clients=3) as traffic:
        result = stack.cli("deploy", "v1.1.0", "--json")
    outcome = json.loads(result.stdout)
    assert outcome["outcome"] == "promoted"
    assert [s["step"] for s in outcome["steps"]][:6] == [
        "verify artifact",
        "gate: holdout metrics meet thresholds",
        "gate: not worse than active v1.0.0",
        "load v1.1.0 into green",
        "gate: green ready and serving v1.1.0",
        "gate: smoke evaluation through the preview door",
    ]
    assert stack.front_color() == "green"
    assert traffic.failures == []
    assert set(traffic.versions) == {"v1.0.0", "v1.1.0"}
    history = stack.history()
    assert [e["outcome"] for e in history if e["action"] == "gate"] == ["passed"] * 4
    assert history[-1]["action"] == "deploy" and history[-1]["outcome"] == "promoted"
    status = stack.status()
    assert status["phase"] == "promoted" and status["stable"] == "v1.1.0"
    assert status["colors"]["blue"]["state"] == "up"  # kept warm for a rollback


def test_a_bad_model_is_blocked_before_any_traffic_moves(stack):
    assert json.loads(register_constant_model(stack).stdout)["metrics"]["accuracy"] == pytest.approx(1 / 3)
    green_pids = sorted(stack.gunicorn_pids("green"))
    result = stack.cli("deploy", "v2.0.0", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "bluegreen: deploy v2.0.0 blocked by gate: holdout metrics meet thresholds: v2.0.0 holdout accuracy "
        "0.3333 is below the threshold 0.9000; traffic stays on blue")
    assert stack.front_color() == "blue"
    assert sorted(stack.gunicorn_pids("green")) == green_pids  # the rollback target was not touched
    assert stack.history()[-1]["outcome"] == "aborted"


def test_a_card_that_lies_is_caught_by_the_smoke_evaluation(stack, models_dir):
    register_constant_model(stack)
    card_path = models_dir / "iris_model_v2.0.0.json"
    card = json.loads(card_path.read_text())
    card["metrics"].update(accuracy=0.99, f1_score=0.99, precision=0.99, recall=0.99)
    card_path.write_text(json.dumps(card))
    result = stack.cli("deploy", "v2.0.0", check=False)
    assert result.returncode == 1
    assert "blocked by gate: smoke evaluation through the preview door: smoke accuracy 0.3333 does not " \
           "match the card's 0.9900" in result.stderr
    assert stack.front_color() == "blue"


def test_unknown_version_fails_cleanly(stack):
    result = stack.cli("deploy", "v9.9.9", check=False)
    assert result.returncode == 1
    # one line naming the card looked for, the directory searched and where that came from
    assert result.stderr.count("\n") == 1
    assert "unknown version v9.9.9: no model card iris_model_v9.9.9.json in " in result.stderr
    assert "(models_dir = " in result.stderr and f" in {stack.config}" in result.stderr
    assert result.stderr.strip().endswith("; traffic stays on blue")
    assert stack.front_color() == "blue"


def test_corrupt_artifact_fails_cleanly(stack, models_dir):
    register_constant_model(stack)
    artifact = models_dir / "iris_model_v2.0.0.joblib"
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"corrupted!")
    green_pids = sorted(stack.gunicorn_pids("green"))
    result = stack.cli("deploy", "v2.0.0", check=False)
    assert result.returncode == 1
    assert "iris_model_v2.0.0.joblib: sha256" in result.stderr and "does not match the card's" in result.stderr
    assert stack.front_color() == "blue"
    assert sorted(stack.gunicorn_pids("green")) == green_pids


def test_killing_the_new_color_during_the_bake_rolls_back(stack):
    with Traffic(stack.front, clients=3) as traffic:
        deploy = stack.popen("deploy", "v1.1.0")
        wait_until(lambda: json.loads((stack.run_dir / "state.json").read_text())["rollout"]["phase"] == "baking",
                   60, what="the bake to begin")
        killed_at = time.monotonic()
        stack.kill_color("green")
        out, err = deploy.communicate(timeout=60)
        finished = time.monotonic() - killed_at
        time.sleep(0.5)
    assert deploy.returncode == 1, out + err
    assert "deploy v1.1.0 rolled back: 127.0.0.1:" in err
    assert stack.front_color() == "blue"
    assert finished < 5.0
    # Only responses under way at the instant of the kill can break (nginx cannot retry a
    # response it has started sending); every request after that succeeds.
    assert len(traffic.failures) <= 3
    assert traffic.failures_after(killed_at + 1.0) == []
    rollback = [e for e in stack.history() if e["action"] == "rollback"][-1]
    assert rollback["outcome"] == "succeeded" and rollback["reason"].startswith("automatic rollback: ")
    assert stack.status()["phase"] == "rolled-back"
    print(f"\nrollback after the new color was killed: {finished:.2f}s from the kill to the deploy exiting, "
          f"{traffic.sent} requests, {len(traffic.failures)} failed")


def test_a_bake_without_traffic_pauses_then_goes_back_to_the_stable_version_never_a_pass(stack):
    result = stack.cli("deploy", "v1.1.0", check=False)
    assert result.returncode == 1
    assert "pause: paused (undecided: " in result.stdout
    assert "rolled back: paused 5s without a verdict" in result.stderr
    assert [(e["action"], e["outcome"]) for e in stack.history()][-4:] == [
        ("pause", "started"), ("pause", "stopped"), ("rollback", "succeeded"), ("deploy", "rolled-back")]
    assert stack.status()["phase"] == "rolled-back" and stack.front_color() == "blue"


def test_without_pauses_an_undecided_bake_ends_degraded_and_promote_ends_that(models_dir, tmp_path):
    with Stack(tmp_path, models_dir, FAST_BAKE.replace("pause_timeout = 5.0", "pause_timeout = 0")) as stack:
        result = stack.cli("deploy", "v1.1.0", check=False)
        assert result.returncode == 1 and "bake inconclusive" in result.stderr
        assert stack.status()["phase"] == "degraded" and stack.status()["stable"] == "v1.0.0"
        promoted = stack.cli("promote", "--reason", "labels arrive next week")
        assert "promoted v1.1.0: it is the stable version now (labels arrive next week)" in promoted.stdout
        status = stack.status()
        assert (status["phase"], status["stable"], status["active"]) == ("promoted", "v1.1.0", "green")
        last = stack.history()[-1]
        assert (last["action"], last["outcome"]) == ("promote", "succeeded")
        assert last["overrode"]["verdict"] == "inconclusive"


def test_watch_rolls_back_when_live_accuracy_drops(stack):
    stack.cli("switch", "green")
    watch = stack.popen("watch", "--duration", "30")
    # The labels must come inside watch's window: its first poll line says the window began
    # (a fixed sleep was too short whenever the machine was busy starting the command).
    seen = []
    while not seen or (seen[-1] and " poll " not in seen[-1]):
        seen.append(watch.stdout.readline())
    # Twelve labels that disagree with what green answers, in one request so that a poll
    # sees all of them or none (one by one, a poll could judge the first ten or eleven):
    # live accuracy falls to 0.
    labelled = requests.post(stack.front + "/feedback", headers=stack.feedback_auth(),
                             json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 12, "labels": ["virginica"] * 12})
    assert labelled.status_code == 200 and labelled.json()["recorded"] == 12
    with Traffic(stack.front, clients=1):
        out, err = watch.communicate(timeout=60)
    out = "".join(seen) + out
    assert watch.returncode == 1, out + err
    assert "live accuracy 0.00% over 12 labelled samples since the bake began is below 80.00%" in out
    assert stack.front_color() == "blue"
    assert stack.history()[-1]["action"] == "rollback"


def test_models_lists_versions_and_where_they_run(stack):
    register_constant_model(stack)
    rows = json.loads(stack.cli("models", "--json").stdout)
    assert [(r["version"], r["colors"], r["active"]) for r in rows] == [
        ("v1.0.0", ["blue"], True), ("v1.1.0", ["green"], False), ("v2.0.0", [], False)]
    assert rows[2]["fast_path"] == "sklearn"


@pytest.mark.parametrize("version, make_file, flags, error", [
    ("v1.0.0", True, [], "bluegreen: version v1.0.0 already exists in"),
    ("latest", True, [], "bluegreen: invalid version 'latest': expected vMAJOR.MINOR.PATCH, e.g. v1.2.0"),
    ("v3.0.0", True, [], "m.joblib is a pickle (joblib) file, and unpickling runs whatever code it contains"),
    ("v3.0.0", False, ["--trust-pickle"], "not a joblib file"),
])
def test_register_refuses_with_a_reason(stack, version, make_file, flags, error):
    path = stack.dir / "m.joblib"
    if make_file:
        x_train, _, y_train, _, _ = iris_split()
        joblib.dump(DummyClassifier().fit(x_train, y_train), path)
    else:
        path.write_text("not a model")
    result = stack.cli("register", version, str(path), *flags, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("bluegreen: ") and error in result.stderr
