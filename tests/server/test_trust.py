"""The trust boundary of one color: who may send feedback, and what no client input can do.

Each test names the point of issue 11 it covers; each fails on the code before that change.
"""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from app.server import create_app
from app.server.config import load_settings
from tests.server.conftest import AUTH, FEEDBACK_TOKEN

ROW = [5.1, 3.5, 1.4, 0.2]
WRONG_LABEL = {"x": ROW, "label": "virginica"}  # v1.0.0 answers setosa for this row


def live(client) -> dict:
    return client.get("/health").get_json()["live"]


# -- 1. feedback only from whoever holds the token ------------------------------------------
NO_TOKEN = "POST /feedback requires a bearer token: send Authorization: Bearer <token>"


@pytest.mark.parametrize("headers, error", [
    ({}, NO_TOKEN),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, NO_TOKEN),
    ({"Authorization": "Bearer "}, NO_TOKEN),
    ({"Authorization": "Bearer not-the-token-at-all-00"}, "POST /feedback: the bearer token is not valid"),
    ({"Authorization": f"Bearer {FEEDBACK_TOKEN}x"}, "POST /feedback: the bearer token is not valid"),
])
def test_feedback_without_the_token_is_a_401_and_never_counted(client, headers, error):
    for _ in range(25):
        response = client.post("/feedback", json=WRONG_LABEL, headers=headers)
        assert response.status_code == 401
        assert response.get_json() == {"error": error, "status": 401}
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="bluegreen"'
    stats = live(client)
    assert stats["labelled"] == 0 and stats["accuracy"] is None
    # Refusals are the client's doing: they neither count as traffic nor dilute the error rate.
    assert stats["requests"] == 0


def test_feedback_with_the_token_is_counted(client):
    assert client.post("/feedback", json=WRONG_LABEL, headers=AUTH).status_code == 200
    assert client.post("/feedback", json=WRONG_LABEL, headers={"Authorization": f"bearer {FEEDBACK_TOKEN}"}
                       ).status_code == 200
    assert live(client)["labelled"] == 2 and live(client)["accuracy"] == 0.0


def test_feedback_is_disabled_when_no_token_is_configured(shipped_models):
    client = create_app({"MODELS_DIR": str(shipped_models)}).test_client()
    response = client.post("/feedback", json=WRONG_LABEL, headers=AUTH)
    assert response.status_code == 403
    assert response.get_json() == {
        "error": "POST /feedback is disabled on this server: no token is configured "
                 "(set FEEDBACK_TOKEN or FEEDBACK_TOKEN_FILE)", "status": 403}
    assert live(client)["labelled"] == 0


def test_the_token_is_read_once_from_a_file(tmp_path):
    path = tmp_path / "feedback.token"
    path.write_text(FEEDBACK_TOKEN + "\n")
    assert load_settings(environ={"FEEDBACK_TOKEN_FILE": str(path)})["FEEDBACK_TOKEN"] == FEEDBACK_TOKEN


@pytest.mark.parametrize("environ, error", [
    ({"FEEDBACK_TOKEN": "short"}, "FEEDBACK_TOKEN is 5 characters; use at least 16"),
    ({"FEEDBACK_TOKEN": "has a space in it, sixteen+"}, "FEEDBACK_TOKEN must be printable ASCII without spaces"),
    ({"FEEDBACK_TOKEN_FILE": "missing/feedback.token"}, "FEEDBACK_TOKEN_FILE=missing/feedback.token: cannot be read"),
    ({"FEEDBACK_TOKEN": FEEDBACK_TOKEN, "FEEDBACK_TOKEN_FILE": "x"},
     "set FEEDBACK_TOKEN or FEEDBACK_TOKEN_FILE, not both"),
    ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN is 5 characters"),
])
def test_a_bad_token_setting_stops_the_server_before_it_serves(environ, error):
    with pytest.raises(ValueError, match=error):
        load_settings(environ=environ)


def test_metrics_can_require_their_own_token(shipped_models):
    client = create_app({"MODELS_DIR": str(shipped_models), "METRICS_TOKEN": "metrics-token-0123456789"}).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["error"] == (
        "GET /metrics requires a bearer token: send Authorization: Bearer <token>")
    answered = client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"})
    assert answered.status_code == 200 and "bluegreen_http_requests_total" in answered.get_data(as_text=True)


# -- 2. no client input is a 5xx ----------------------------------------------------------
@pytest.mark.parametrize("body", ["[" * 100_000, '{"x": ' + "[" * 5000 + "]" * 5000 + "}", '{"a": ' * 50_000])
def test_deeply_nested_json_is_a_400_not_a_500(client, body):
    for _ in range(6):
        response = client.post("/predict", data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.get_json()["error"].startswith("request body nests JSON too deeply; expected")
    stats = live(client)
    assert stats["server_errors"] == 0 and stats["error_rate"] is None


def test_an_integer_too_long_to_parse_is_a_400(client):
    response = client.post("/predict", data='{"x": [' + "9" * 5000 + ", 1, 1, 1]}", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("request body is not valid JSON")


# -- 3. metric labels from closed sets ----------------------------------------------------
def test_invented_methods_fold_into_one_label(client):
    for i in range(300):
        assert client.open("/health", method=f"X{i}METHOD").status_code == 405
        assert client.open(f"/nope{i}", method="BREW").status_code in (404, 405)
    text = client.get("/metrics").get_data(as_text=True)
    methods = {line.split('method="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("bluegreen_http_requests_total{")}
    assert methods == {"other"}
    assert 'bluegreen_http_requests_total{endpoint="unmatched",method="other",status="405"} 300.0' in text
    assert len(text) < 20_000


# -- 4. the model's numeric range; never NaN in an answer ----------------------------------
@pytest.fixture
def logistic(shipped_models):
    return create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.1.0",
                       "FEEDBACK_TOKEN": FEEDBACK_TOKEN}).test_client()


LIMIT = "this model computes in float32, so each value must lie within ±3.4028235e+38"


@pytest.mark.parametrize("row, error", [
    ([1e39, 3, 4.2, 1.5], f'"x"[0] is out of range: {LIMIT}'),
    ([1e300, 3, 4.2, 1.5], f'"x"[0] is out of range: {LIMIT}'),
    ([1, 2, 3, -(10 ** 400)], f'"x"[3] is out of range: {LIMIT}'),
    ([3e38, 3e38, 3e38, 3e38], f'"x" is too large for this model to compute: its answer overflows (largest value '
                               f'3e+38; {LIMIT}); send values on the scale of the training data'),
])
def test_values_the_model_cannot_represent_are_a_400_naming_the_limit(logistic, row, error):
    for path, body in (("/predict", {"x": row}), ("/feedback", {"x": row, "label": "setosa"})):
        response = logistic.post(path, data=json.dumps(body), content_type="application/json", headers=AUTH)
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.get_json() == {"error": error, "status": 400}
    assert live(logistic)["labelled"] == 0


def test_a_batch_names_the_row_that_overflows(logistic):
    response = logistic.post("/predict", json={"instances": [ROW, [-3e38, 3e38, -3e38, 3e38]]})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith('"instances"[1] is too large for this model to compute')


def test_large_values_within_range_answer_valid_json(logistic, client):
    for c in (logistic, client):
        for row in ([3e38, 3, 4.2, 1.5], [1e30, -1e30, 1e30, -1e30], [1e6, 1e6, 1e6, 1e6]):
            response = c.post("/predict", json={"x": row})
            text = response.get_data(as_text=True)
            assert "NaN" not in text and "Infinity" not in text
            if response.status_code == 200:
                assert json.loads(text)["prediction"] in ("setosa", "versicolor", "virginica")
            else:
                assert response.status_code == 400


def test_the_sklearn_path_has_the_float64_limit(shipped_models):
    client = create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.1.0",
                         "PREDICTOR": "sklearn"}).test_client()
    assert client.post("/predict", json={"x": [1e39, 3, 4.2, 1.5]}).status_code == 200
    response = client.post("/predict", json={"x": [1.7e308, -1.7e308, 1.7e308, -1.7e308]})
    assert response.status_code == 400
    assert "this model computes in float64" in response.get_json()["error"]


# -- the OpenAPI document -------------------------------------------------------------------
def test_the_openapi_document_is_valid_and_carries_the_real_limits(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    row = document["components"]["schemas"]["Row"]
    assert (row["minItems"], row["maxItems"], row["items"]["maximum"]) == (4, 4, pytest.approx(3.4028235e38))
    assert document["components"]["schemas"]["Batch"]["properties"]["instances"]["maxItems"] == 1000
    assert document["paths"]["/feedback"]["post"]["security"] == [{"feedbackToken": []}]
    assert set(document["paths"]) == {"/predict", "/feedback", "/health", "/ready", "/livez", "/metrics",
                                      "/openapi.json",
                                      # the inference protocols (docs/adr/0014)
                                      "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
                                      "/v2/models/{name}/versions/{version}", "/v2/models/{name}/ready",
                                      "/v2/models/{name}/versions/{version}/ready", "/v2/models/{name}/infer",
                                      "/v2/models/{name}/versions/{version}/infer", "/v1/models/{name}",
                                      "/v1/models/{name}:predict", "/invocations", "/ping", "/version"}
