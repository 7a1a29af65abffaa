"""The Argo Rollouts analysis (k8s/argo/analysis-template.yaml), evaluated the way Argo does.

Each metric's conditions run on answers from the real model server (its Flask app, on the
shipped models) through ``tests/platform/argo_expr.py``: expr's rules, the web provider's
jsonPath, ``EvaluateResult`` and ``assessMetricStatus``. The evaluator is first held to
cases taken from argo-rollouts' own tests and docs (``utils/evaluate/evaluate_test.go``,
``docs/features/analysis.md``).

What the template must give: a good version passes; a bad one fails; no data (no labels
yet, a missing figure) is inconclusive, which pauses the rollout, never a pass and never
an evaluation error (which aborts).
"""

from __future__ import annotations

import json

import pytest
import yaml

from app.server import create_app
from tests.helpers import ROOT
from tests.platform import argo_expr
from tests.platform.argo_expr import ERROR, FAILED, INCONCLUSIVE, RUNNING, SUCCESSFUL, ExprError

TOKEN = "feedback-token-for-the-test"
TEMPLATES = {doc["metadata"]["name"]: {m["name"]: m for m in doc["spec"]["metrics"]}
             for doc in yaml.safe_load_all((ROOT / "k8s" / "argo" / "analysis-template.yaml").read_text())}
PRE, POST = TEMPLATES["iris-pre-promotion"], TEMPLATES["iris-post-promotion"]
# What Argo does with an analysis run's phase (rollout/analysis.go, setPauseOrAbortForBlueGreen).
ROLLOUT_ACTION = {SUCCESSFUL: "continue", INCONCLUSIVE: "pause", ERROR: "abort", FAILED: "abort"}


# -- the evaluator agrees with Argo's own cases ---------------------------------------------------------
@pytest.mark.parametrize("expression, result, expected", [
    ("result == true", True, True),                 # TestEvaluateConditionWithSuccess
    ("result == false", True, False),               # TestEvaluateConditionWithFailure
    ("result > 1", 5.0, True),                      # TestEvaluateFloat64
    ("result.a == 'x'", {"a": "x"}, True),
    ("result.missing == nil", {"a": 1}, True),      # a missing key of a map is nil
    ("(result?.a?.b ?? 7) == 7", None, True),       # ?. ends the chain on nil
    ("7 == result?.a ?? 7", None, True),            # ?? binds tighter than ==
    ("len(result ?? []) == 0", None, True),
    ("1 == 1.0 && 'a' != 1", None, True),           # numbers compare across types; no equality across others
    ("false && result.x > 1", None, False),         # && short-circuits
])
def test_the_evaluator_follows_expr(expression, result, expected):
    assert argo_expr.condition(expression, result) is expected


@pytest.mark.parametrize("expression, result, error", [
    ("1", True, "expected bool"),                   # TestErrorWithNonBoolReturn
    ("invalidVariable", True, "unknown name invalidVariable"),   # TestErrorWithInvalidReference
    ("result < 0.05", None, "mismatched types <nil> and float64"),  # docs: an empty Datadog result
    ("result.a.b == 1", {"a": None}, "cannot fetch b from <nil>"),
    ("result >= 0.8", "0.9", "mismatched types string and float64"),
    ("result ?? 7 == 7", None, "cannot be mixed"),  # expr's parser refuses ?? then another operator
])
def test_the_evaluator_errs_where_expr_does(expression, result, error):
    with pytest.raises(ExprError, match=error):
        argo_expr.condition(expression, result)


def test_the_evaluator_refuses_what_it_does_not_implement():
    with pytest.raises(argo_expr.Unsupported):
        argo_expr.condition("default(result, 0) > 1", 1)


@pytest.mark.parametrize("metric, phases, expected", [
    # count reached, failureLimit not violated: Successful (even when all were inconclusive
    # but inconclusiveLimit allowed them: why the template uses consecutiveSuccessLimit).
    ({"count": 3, "inconclusiveLimit": 3}, [INCONCLUSIVE] * 3, SUCCESSFUL),
    ({"count": 3}, [INCONCLUSIVE], INCONCLUSIVE),                     # default inconclusiveLimit 0
    ({"count": 3}, [ERROR] * 5, ERROR),                               # consecutiveErrorLimit 4
    ({"count": 3}, [ERROR] * 4 + [SUCCESSFUL] * 3, SUCCESSFUL),       # errors do not count
    ({"count": 4, "consecutiveSuccessLimit": 2, "inconclusiveLimit": 4},
     [INCONCLUSIVE, SUCCESSFUL, INCONCLUSIVE, SUCCESSFUL], INCONCLUSIVE),  # docs: neither limit reached
    ({"count": 4, "consecutiveSuccessLimit": 2}, [SUCCESSFUL, SUCCESSFUL], SUCCESSFUL),
])
def test_metric_assessment_follows_argo(metric, phases, expected):
    assert argo_expr.run_metric(metric, phases)[0] == expected


# -- answers from the real server ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def servers(shipped_models):
    """A good color per shipped version, answering through Flask's test client."""
    return {version: create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": version, "COLOR": "green",
                                 "FEEDBACK_TOKEN": TOKEN}).test_client()
            for version in ("v1.0.0", "v1.1.0")}


def health(client) -> dict:
    answer = client.get("/health")
    assert answer.status_code == 200
    return answer.get_json()


def web(metric: dict, client) -> str:
    """One measurement of ``metric`` against ``client``, the way the web provider takes it."""
    spec = metric["provider"]["web"]
    path = "/" + spec["url"].split("/", 3)[3]
    answer = client.post(path, json=spec["jsonBody"]) if spec.get("method") == "POST" else client.get(path)
    return argo_expr.measure(metric, answer.status_code, answer.get_data(as_text=True))


def with_changes(document: dict, **changes) -> str:
    changed = json.loads(json.dumps(document))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = changed
        for parent in parents:
            target = target[parent]
        if value is Ellipsis:
            target.pop(key, None)
        else:
            target[key] = value
    return json.dumps(changed)


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0"])
def test_pre_promotion_passes_a_good_preview(servers, version):
    phases = {}
    for name, metric in PRE.items():
        measurements = [web(metric, servers[version]) for _ in range(int(metric.get("count", 1)))]
        phases[name] = argo_expr.run_metric(metric, measurements)[0]
    assert phases == {"serving": SUCCESSFUL, "card-metrics": SUCCESSFUL, "smoke": SUCCESSFUL}
    assert ROLLOUT_ACTION[argo_expr.worst(list(phases.values()))] == "continue"


@pytest.mark.parametrize("metric, changes, expected", [
    ("serving", {"status": "draining"}, FAILED),
    ("serving", {"ready": False}, INCONCLUSIVE),            # ok but not ready yet: wait, do not pass
    ("serving", {"status": ...}, FAILED),                   # no status: not a serving model server
    ("card-metrics", {"metrics__accuracy": 0.6}, FAILED),
    ("card-metrics", {"metrics__f1_score": 0.5}, FAILED),
    ("card-metrics", {"metrics__accuracy": None}, INCONCLUSIVE),   # no data: never a pass, never an error
    ("card-metrics", {"metrics": ...}, INCONCLUSIVE),
    ("card-metrics", {"metrics": None}, INCONCLUSIVE),
])
def test_pre_promotion_health_conditions(servers, metric, changes, expected):
    body = with_changes(health(servers["v1.1.0"]), **changes)
    assert argo_expr.measure(PRE[metric], 200, body) == expected


@pytest.mark.parametrize("answer, expected", [
    ({"predictions": [{"prediction": "setosa"}, {"prediction": "versicolor"}, {"prediction": "setosa"}]}, FAILED),
    ({"predictions": [{"prediction": "setosa"}]}, FAILED),
    ({"predictions": None}, FAILED),
    ({"prediction": "setosa"}, FAILED),
])
def test_the_smoke_evaluation_fails_wrong_or_missing_answers(answer, expected):
    assert argo_expr.measure(PRE["smoke"], 200, json.dumps(answer)) == expected


def test_the_smoke_evaluation_of_a_constant_model_fails(servers, monkeypatch):
    # A "model" that always answers setosa, through the real view.
    app_server = servers["v1.0.0"].application.extensions["model_server"]
    constant = [{"prediction": "setosa", "probabilities": {}}]
    monkeypatch.setattr(app_server, "predict", lambda rows, single=False: constant * len(rows))
    assert web(PRE["smoke"], servers["v1.0.0"]) == FAILED


def test_a_preview_that_does_not_answer_errors_until_the_limit_then_aborts():
    phase, used = argo_expr.run_metric(PRE["serving"], [argo_expr.measure(PRE["serving"], None)] * 10)
    assert (phase, used) == (ERROR, 5)
    assert argo_expr.measure(PRE["smoke"], 400, '{"error": "bad", "status": 400}') == ERROR


def send_feedback(client, n: int, correct: bool) -> None:
    reference = json.loads((ROOT / "models" / "iris_model_v1.1.0.json").read_text())["reference"]
    rows, labels = reference["rows"][:n], reference["labels"][:n]
    if not correct:
        labels = ["setosa" if label != "setosa" else "virginica" for label in labels]
    answer = client.post("/feedback", json={"instances": rows, "labels": labels},
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.get_json()


def test_post_promotion_with_no_labels_is_inconclusive_not_an_error(shipped_models):
    client = create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.1.0",
                         "FEEDBACK_TOKEN": TOKEN}).test_client()
    assert health(client)["live"]["accuracy"] is None        # what the old template compared with 0.8
    metric = POST["live-accuracy"]
    measurements = [web(metric, client) for _ in range(int(metric["count"]))]
    assert measurements == [INCONCLUSIVE] * 10
    phase, _ = argo_expr.run_metric(metric, measurements)
    assert phase == INCONCLUSIVE and ROLLOUT_ACTION[phase] == "pause"


def test_the_old_live_accuracy_condition_errored_on_no_data_and_aborted():
    # The template before this change: live-accuracy on the preview, whose accuracy is null.
    old = {"successCondition": "result >= 0.8", "failureCondition": "result < 0.8", "count": 3,
           "inconclusiveLimit": 3, "provider": {"web": {"jsonPath": "{$.live.accuracy}"}}}
    measurement = argo_expr.measure(old, 200, json.dumps({"live": {"accuracy": None}}))
    assert measurement == ERROR
    assert ROLLOUT_ACTION[argo_expr.run_metric(old, [measurement] * 5)[0]] == "abort"


@pytest.mark.parametrize("labels, correct, expected", [
    (10, True, INCONCLUSIVE),   # below the minimum labelled count: no verdict either way
    (10, False, INCONCLUSIVE),
    (30, True, SUCCESSFUL),
    (30, False, FAILED),
])
def test_post_promotion_live_accuracy_judges_only_enough_labels(shipped_models, labels, correct, expected):
    client = create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.1.0",
                         "FEEDBACK_TOKEN": TOKEN}).test_client()
    send_feedback(client, labels, correct)
    assert web(POST["live-accuracy"], client) == expected


def test_post_promotion_succeeds_after_three_passes_in_a_row_and_fails_on_one_failure():
    metric = POST["live-accuracy"]
    assert argo_expr.run_metric(metric, [INCONCLUSIVE] * 4 + [SUCCESSFUL] * 3) == (SUCCESSFUL, 7)
    assert argo_expr.run_metric(metric, [INCONCLUSIVE, SUCCESSFUL, FAILED]) == (FAILED, 3)
    assert argo_expr.run_metric(metric, [SUCCESSFUL, INCONCLUSIVE] * 5) == (INCONCLUSIVE, 10)
    assert argo_expr.run_metric(metric, [SUCCESSFUL, SUCCESSFUL]) == (RUNNING, 2)


@pytest.mark.parametrize("live, expected", [
    ({"requests": 10, "error_rate": 0.5}, INCONCLUSIVE),
    ({"requests": 0, "error_rate": None}, INCONCLUSIVE),
    ({"requests": 200, "error_rate": 0.0}, SUCCESSFUL),
    ({"requests": 200, "error_rate": 0.05}, FAILED),
    ({}, INCONCLUSIVE),
])
def test_post_promotion_error_rate(live, expected):
    assert argo_expr.measure(POST["error-rate"], 200, json.dumps({"status": "ok", "live": live})) == expected


def test_every_metric_reads_the_whole_answer_so_a_missing_field_is_no_data_not_an_error():
    for metrics in TEMPLATES.values():
        for metric in metrics.values():
            assert metric["provider"]["web"]["jsonPath"] == "{$}", metric["name"]
            assert argo_expr.measure(metric, 200, "{}") in (INCONCLUSIVE, FAILED), metric["name"]


def test_the_rollout_runs_each_template_on_the_right_service():
    rollout = yaml.safe_load((ROOT / "k8s" / "argo" / "rollout.yaml").read_text())
    strategy = rollout["spec"]["strategy"]["blueGreen"]
    assert strategy["prePromotionAnalysis"] == {"templates": [{"templateName": "iris-pre-promotion"}],
                                                "args": [{"name": "service", "value": "iris-preview"}]}
    assert strategy["postPromotionAnalysis"] == {"templates": [{"templateName": "iris-post-promotion"}],
                                                 "args": [{"name": "service", "value": "iris-active"}]}
