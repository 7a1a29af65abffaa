"""The HTTP contract of one color, through the Flask test client."""

from __future__ import annotations

import json

import pytest

from app.server import create_app
from tests.server.conftest import AUTH

ROW = [5.1, 3.5, 1.4, 0.2]
CLASSES = {"setosa", "versicolor", "virginica"}


def post(client, body, content_type="application/json", path="/predict"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type, headers=AUTH if path == "/feedback" else {})


def test_single_prediction_keeps_the_original_names(client):
    response = post(client, {"x": ROW})
    assert response.status_code == 200
    body = response.get_json()
    assert body["prediction"] == "setosa"
    assert set(body["probabilities"]) == CLASSES
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert body["version"] == "v1.0.0"
    assert body["color"] == "blue"
    assert body["request_id"]
    assert response.headers["X-Model-Version"] == "v1.0.0"
    assert response.headers["X-Color"] == "blue"


def test_batch_prediction_answers_each_row(client):
    rows = [ROW, [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    response = post(client, {"instances": rows})
    assert response.status_code == 200
    body = response.get_json()
    assert [item["prediction"] for item in body["predictions"]] == ["setosa", "virginica", "versicolor"]
    assert body["version"] == "v1.0.0" and body["color"] == "blue"


def test_curl_form_encoded_body_is_accepted(client):
    # curl URL/predict -d '{"x": [...]}' sends application/x-www-form-urlencoded.
    response = post(client, json.dumps({"x": ROW}), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert response.get_json()["prediction"] == "setosa"


def test_body_without_content_type_is_accepted(client):
    response = client.post("/predict", data=json.dumps({"x": ROW}))
    assert response.status_code == 200


def test_incoming_request_id_is_echoed(client):
    response = client.post("/predict", json={"x": ROW}, headers={"X-Request-ID": "abc-123"})
    assert response.get_json()["request_id"] == "abc-123"
    assert response.headers["X-Request-ID"] == "abc-123"


def test_health_reports_card_metrics_without_recomputing(client, shipped_models):
    card = json.loads((shipped_models / "iris_model_v1.0.0.json").read_text())
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["version"] == "v1.0.0" and body["color"] == "blue"
    assert body["metrics"] == {k: card["metrics"][k] for k in ("accuracy", "f1_score", "precision", "recall")}
    assert body["sha256"] == card["sha256"]
    assert body["algorithm"] == "RandomForestClassifier"
    assert body["predictor"]["path"] == "onnx"
    assert body["uptime_seconds"] >= 0


def test_readiness_and_liveness_are_separate(app, client):
    assert client.get("/ready").status_code == 200
    assert client.get("/livez").status_code == 200
    app.extensions["model_server"].draining.set()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.get_json()["error"] == "draining: the server is shutting down"
    assert client.get("/livez").status_code == 200
    assert client.get("/health").get_json()["status"] == "draining"


def test_a_request_meant_for_the_other_color_counts_as_a_failover(client):
    client.post("/predict", json={"x": ROW}, headers={"X-Route-Color": "blue"})  # blue serves it: not one
    client.post("/predict", json={"x": ROW})                                    # directly: not one
    client.post("/predict", json={"x": ROW}, headers={"X-Route-Color": "green"})
    live = client.get("/health").get_json()["live"]
    assert live["failovers"] == 1 and live["requests"] == 3
    assert live["since"].endswith("Z")
    assert "bluegreen_failover_requests_total 1.0" in client.get("/metrics").get_data(as_text=True)


def test_live_latency_buckets_count_the_traffic_a_bake_judges(client):
    for _ in range(3):
        post(client, {"x": ROW})
    post(client, {"x": ROW, "label": "setosa"}, path="/feedback")
    post(client, {"x": [1, 2]})                               # refused (400): not traffic
    client.get("/ready")                                      # not /predict or /feedback
    live = client.get("/health").get_json()["live"]
    buckets = live["latency_buckets"]
    assert list(buckets)[0] == "0.0005" and list(buckets)[-1] == "+Inf"
    assert buckets["+Inf"] == live["requests"] == 4
    counts = list(buckets.values())
    assert counts == sorted(counts)                           # cumulative
    assert buckets["2.5"] == 4                                # none of these took 2.5 s
    # The 400 is still timed on /metrics, under its own status class.
    assert 'status_class="4xx"' in client.get("/metrics").get_data(as_text=True)


def test_a_mirrored_request_is_answered_but_never_counted_as_traffic(client):
    response = client.post("/predict", json={"x": ROW}, headers={"X-Bluegreen-Shadow": "1"})
    assert response.status_code == 200 and response.get_json()["prediction"] == "setosa"
    live = client.get("/health").get_json()["live"]
    assert live["requests"] == 0 and live["latency_buckets"]["+Inf"] == 0
    assert 'bluegreen_shadow_requests_total{status="200"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_feedback_drives_live_accuracy(client):
    assert post(client, {"x": ROW, "label": "setosa"}, path="/feedback").status_code == 200
    response = post(client, {"instances": [ROW, ROW], "labels": ["setosa", "virginica"]}, path="/feedback")
    assert response.get_json()["correct"] == 1
    live = client.get("/health").get_json()["live"]
    assert live["labelled"] == 3 and live["correct"] == 2
    assert live["accuracy"] == pytest.approx(2 / 3)


def test_metrics_exposition(client):
    post(client, {"x": ROW})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bluegreen_http_requests_total{endpoint="/predict",method="POST",status="200"} 1.0' in text
    assert 'bluegreen_predictions_total{class_name="setosa"} 1.0' in text
    assert 'bluegreen_model_info{color="blue",predictor="onnx",version="v1.0.0"} 1.0' in text
    assert "bluegreen_http_request_duration_seconds_bucket" in text


EXPECTED = '{"x": [5.1, 3.5, 1.4, 0.2]} or {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}'

BAD_PREDICT_INPUTS = [
    # (body, status, error)
    ("{not json", 400, "request body is not valid JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1)); expected " + EXPECTED),
    ("", 400, 'empty request body; expected a JSON object like {"x": [5.1, 3.5, 1.4, 0.2]} or '
     '{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}'),
    ("[1, 2, 3, 4]", 400, 'request body must be a JSON object like {"x": [5.1, 3.5, 1.4, 0.2]} or '
     '{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}, got a list'),
    ({"y": ROW}, 400, 'missing "x": expected {"x": [4 numbers]} or {"instances": [[4 numbers], ...]}'),
    ({"x": [1, 2, 3]}, 400, '"x" has 3 values; expected 4 numbers'),
    ({"x": [1, 2, 3, 4, 5]}, 400, '"x" has 5 values; expected 4 numbers'),
    ({"x": "1,2,3,4"}, 400, '"x" must be a list of 4 numbers, got a string'),
    ({"x": [1, "a", 3, 4]}, 400, '"x"[1] is a string; expected a number'),
    ({"x": [True, 2, 3, 4]}, 400, '"x"[0] is a boolean; expected a number'),
    ({"x": [1, None, 3, 4]}, 400, '"x"[1] is null; expected a number'),
    ({"x": [[1, 2], 2, 3, 4]}, 400, '"x"[0] is a list; expected a number'),
    ({"x": [[1, 2, 3, 4]]}, 400, '"x" has 1 values; expected 4 numbers'),
    ('{"x": [NaN, 2, 3, 4]}', 400, '"x"[0] is nan; expected a finite number'),
    ('{"x": [1, Infinity, 3, 4]}', 400, '"x"[1] is inf; expected a finite number'),
    ('{"x": [1, 2, 1e999, 4]}', 400, '"x"[2] is inf; expected a finite number'),
    ({"x": ROW, "instances": [ROW]}, 400, 'send either "x" (one row) or "instances" (a batch), not both'),
    ({"instances": []}, 400, '"instances" is empty; expected 1 to 1000 rows'),
    ({"instances": ROW}, 400, '"instances"[0] must be a list of 4 numbers, got a number'),
    ({"instances": {"a": 1}}, 400, '"instances" must be a list of rows, got an object'),
    ({"instances": [ROW, [1, 2]]}, 400, '"instances"[1] has 2 values; expected 4 numbers'),
    ({"instances": [ROW] * 1001}, 400, '"instances" has 1001 rows; the limit is 1000'),
    (b"\xff\xfe{", 400, 'request body is not UTF-8 text; expected a JSON object like {"x": [5.1, 3.5, 1.4, 0.2]} '
     'or {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}'),
]


@pytest.mark.parametrize("body, status, error", BAD_PREDICT_INPUTS)
def test_bad_predict_input_is_a_400_with_a_clear_message(client, body, status, error):
    response = post(client, body)
    assert response.status_code == status
    assert response.get_json() == {"error": error, "status": status}
    assert response.headers["X-Model-Version"] == "v1.0.0"


@pytest.mark.parametrize("body, error", [
    ({"x": ROW}, 'missing "label": expected one of [\'setosa\', \'versicolor\', \'virginica\']'),
    ({"x": ROW, "label": "rose"}, '"label" is "rose"; expected one of [\'setosa\', \'versicolor\', \'virginica\']'),
    ({"instances": [ROW], "labels": []}, '"labels" must be a list of 1 class names, one per instance'),
])
def test_bad_feedback_is_a_400(client, body, error):
    response = post(client, body, path="/feedback")
    assert response.status_code == 400
    assert response.get_json() == {"error": error, "status": 400}


@pytest.mark.parametrize("method, path, status, error", [
    ("get", "/nope", 404, "not found: the API is POST /predict, POST /feedback, GET /health "
                          "(all of it: GET /openapi.json)"),
    ("get", "/predict", 405, "method not allowed for this endpoint"),
    ("delete", "/health", 405, "method not allowed for this endpoint"),
])
def test_http_errors_are_json(client, method, path, status, error):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.get_json() == {"error": error, "status": status}


def test_wrong_content_type_is_a_415(client):
    response = post(client, "x=1", content_type="text/plain")
    assert response.status_code == 415
    assert response.get_json() == {
        "error": "unsupported Content-Type 'text/plain': send the body as application/json", "status": 415}


def test_body_over_the_limit_is_a_413(shipped_models):
    app = create_app({"MODELS_DIR": str(shipped_models), "MAX_CONTENT_LENGTH": 1000})
    response = app.test_client().post("/predict", data=json.dumps({"instances": [ROW] * 100}),
                                      content_type="application/json")
    assert response.status_code == 413
    assert response.get_json() == {"error": "request body too large: the limit is 1000 bytes", "status": 413}


def test_batch_limit_is_configurable(shipped_models):
    app = create_app({"MODELS_DIR": str(shipped_models), "MAX_BATCH_ROWS": 2})
    response = app.test_client().post("/predict", json={"instances": [ROW] * 3})
    assert response.get_json()["error"] == '"instances" has 3 rows; the limit is 2'


def test_bad_input_is_counted_but_never_a_500(client):
    for body, _, _ in BAD_PREDICT_INPUTS:
        post(client, body)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'status="500"' not in text
    assert post(client, {"x": ROW}).status_code == 200


def test_sampled_and_mirrored_answers_are_kept_for_the_shadow_report(client):
    client.post("/predict", json={"x": ROW})                                          # not sampled: not kept
    client.post("/predict", json={"x": ROW}, headers={"X-Bluegreen-Record": "1", "X-Request-ID": "req-1"})
    client.post("/predict", json={"instances": [ROW, [6.7, 3.0, 5.2, 2.3]]},
                headers={"X-Bluegreen-Shadow": "1", "X-Request-ID": "req-2"})
    client.post("/predict", json={"x": [1]}, headers={"X-Bluegreen-Record": "1", "X-Request-ID": "req-3"})
    assert post(client, {"x": ROW, "label": "setosa", "request_id": "req-1"}, path="/feedback").status_code == 200
    records = client.get("/records").get_json()
    assert records["color"] == "blue" and records["version"] == "v1.0.0" and records["dropped"] == 0
    by_id = {(r["id"], "labels" in r): r for r in records["records"]}
    assert set(by_id) == {("req-1", False), ("req-2", False), ("req-3", False), ("req-1", True)}
    assert by_id[("req-1", False)]["predictions"] == ["setosa"] and by_id[("req-1", False)]["shadow"] is False
    assert by_id[("req-2", False)]["predictions"] == ["setosa", "virginica"] and by_id[("req-2", False)]["shadow"]
    assert by_id[("req-3", False)]["status"] == 400 and by_id[("req-3", False)]["predictions"] is None
    assert by_id[("req-1", True)]["labels"] == ["setosa"]
    assert all(r["ms"] >= 0 for r in records["records"] if "ms" in r)
    later = client.get(f"/records?since={records['records'][-1]['t'] + 1}").get_json()["records"]
    assert later == []


@pytest.mark.parametrize("request_id", ["", "has space", "x" * 129, 7])
def test_feedback_naming_a_request_needs_a_plain_request_id(client, request_id):
    response = post(client, {"x": ROW, "label": "setosa", "request_id": request_id}, path="/feedback")
    assert response.status_code == 400
    assert '"request_id" must be the request_id a /predict answer gave' in response.get_json()["error"]


def test_records_are_read_with_the_metrics_token_when_one_is_set(shipped_models):
    app = create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.0.0",
                      "METRICS_TOKEN": "metrics-token-0123456789"})
    client = app.test_client()
    assert client.get("/records").status_code == 401
    assert client.get("/records", headers={"Authorization": "Bearer metrics-token-0123456789"}).status_code == 200
    assert client.get("/records?since=soon", headers={"Authorization": "Bearer metrics-token-0123456789"}
                      ).status_code == 400
