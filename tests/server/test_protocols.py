"""The inference protocols of one color, through both entry points: the hot path in front of
Flask (FAST_PATH on) and Flask's own views (off) must answer alike, in each protocol's shape,
and count every answer in the same metrics and records as /predict."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from app.server import create_app

ROW = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
CSV = ",".join(FEATURES) + "\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"


@pytest.fixture(params=["on", "off"], ids=["hot path", "flask"])
def client(request, shipped_models):
    return create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.0.0", "COLOR": "blue",
                       "FAST_PATH": request.param}).test_client()


def live(client) -> dict:
    return client.get("/health").get_json()["live"]


def oip_json(rows, name="input", datatype="FP32", **extra) -> dict:
    return {"inputs": [{"name": name, "shape": [len(rows), 4], "datatype": datatype,
                        "data": [v for row in rows for v in row]}], **extra}


def test_oip_metadata_health_and_readiness(client):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2").get_json()["extensions"] == ["binary_tensor_data"]
    for path in ("/v2/models/iris", "/v2/models/iris/versions/v1.0.0"):
        meta = client.get(path).get_json()
        assert meta["name"] == "iris" and meta["versions"] == ["v1.0.0"]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        assert meta["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                                   {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert client.get("/v2/models/iris/ready").get_json() == {"name": "iris", "ready": True}
    assert client.get("/v2/models/iris/versions/v1.0.0/ready").status_code == 200


def test_oip_infer_with_json_tensors(client):
    response = client.post("/v2/models/iris/infer", json=oip_json([ROW, VIRGINICA], id="r1"))
    assert response.status_code == 200 and response.headers["X-Model-Version"] == "v1.0.0"
    body = response.get_json()
    assert body["model_name"] == "iris" and body["model_version"] == "v1.0.0" and body["id"] == "r1"
    label, probabilities = body["outputs"]
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["setosa", "virginica"]}
    assert probabilities["datatype"] == "FP32" and probabilities["shape"] == [2, 3]
    assert abs(sum(probabilities["data"][:3]) - 1) < 1e-3


def test_oip_infer_with_binary_tensors(client):
    header = json.dumps({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 64}}],
                         "parameters": {"binary_data_output": True}}).encode()
    body = header + np.array([ROW, VIRGINICA], dtype="<f8").tobytes()
    response = client.post("/v2/models/iris/versions/v1.0.0/infer", data=body,
                           headers={"Inference-Header-Content-Length": str(len(header)),
                                    "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.get_data()
    length = int(response.headers["Inference-Header-Content-Length"])
    raw = response.get_data()
    head = json.loads(raw[:length])
    label, probabilities = head["outputs"]
    blob = raw[length:]
    labels_blob, probs_blob = blob[:label["parameters"]["binary_data_size"]], blob[label["parameters"][
        "binary_data_size"]:]
    size = struct.unpack("<I", labels_blob[:4])[0]
    assert labels_blob[4:4 + size] == b"setosa"
    assert np.frombuffer(probs_blob, dtype="<f4").reshape(2, 3).argmax(axis=1).tolist() == [0, 2]


@pytest.mark.parametrize("body, error", [
    ({"inputs": []}, '"inputs" must be a list of one input tensor'),
    (oip_json([ROW], datatype="BYTES"), 'input "input" has datatype \'BYTES\''),
    (oip_json([ROW], datatype={}), 'input "input" has datatype \'{}\''),
    ({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
     'input "input" must have shape [N, 4]'),
    ({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]},
     'input "input" has 3 values in "data"; its shape [1, 4] needs 4'),
    ({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, "a", 3, 4]}]},
     'input "input" data[1] is a string; expected a number'),
    ({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, True, 3, 4]}]},
     'input "input" data[1] is a boolean; expected a number'),
    (oip_json([ROW], outputs=[{"name": "nope"}]), '"outputs"[0] must name an output of this model'),
    (oip_json([ROW], id=5), '"id" must be a string'),
])
def test_oip_bad_input_is_a_400_in_the_protocols_shape(client, body, error):
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(error) and response.get_json()["status"] == 400
    assert live(client)["requests"] == 0


@pytest.mark.parametrize("path, error", [
    ("/v2/models/rose/infer", "unknown model 'rose': this server serves model 'iris'"),
    ("/v2/models/iris/versions/v1.1.0/infer", "model iris has no version 'v1.1.0' here: this server serves v1.0.0"),
])
def test_oip_unknown_model_or_version_is_a_404(client, path, error):
    response = client.post(path, json=oip_json([ROW]))
    assert response.status_code == 404 and response.get_json() == {"error": error, "status": 404}


def test_a_request_pinned_to_another_version_is_refused_by_every_route(client):
    pinned = {"X-Model-Version": "v1.1.0"}
    for path, body in (("/predict", {"x": ROW}), ("/v2/models/iris/infer", oip_json([ROW])),
                       ("/v1/models/iris:predict", {"instances": [ROW]}), ("/invocations", {"instances": [ROW]})):
        response = client.post(path, json=body, headers=pinned)
        assert response.status_code == 404, path
        assert "not the version pinned by X-Model-Version (v1.1.0)" in response.get_json()["error"]
    assert client.post("/predict", json={"x": ROW}, headers={"X-Model-Version": "v1.0.0"}).status_code == 200


def test_kserve_v1(client):
    assert client.get("/v1/models/iris").get_json() == {"name": "iris", "version": "v1.0.0", "ready": True}
    body = client.post("/v1/models/iris:predict", json={"instances": [ROW, VIRGINICA]}).get_json()
    assert body["predictions"] == ["setosa", "virginica"] and len(body["probabilities"]) == 2
    bad = client.post("/v1/models/iris:predict", json={"instances": [ROW, [1, 2]]})
    assert bad.status_code == 400 and bad.get_json() == {"error": '"instances"[1] has 2 values; expected 4 numbers',
                                                         "status": 400}


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": FEATURES, "data": [ROW, VIRGINICA]}},
    {"dataframe_split": {"columns": FEATURES[::-1], "data": [ROW[::-1], VIRGINICA[::-1]]}},
    {"dataframe_records": [dict(zip(FEATURES, ROW)), dict(zip(FEATURES, VIRGINICA))]},
    {"instances": [ROW, VIRGINICA]},
    {"inputs": [ROW, VIRGINICA], "params": {}},
])
def test_mlflow_json_shapes(client, body):
    response = client.post("/invocations", json=body)
    assert response.status_code == 200 and response.get_json() == {"predictions": ["setosa", "virginica"]}


def test_mlflow_csv_ping_and_version(client):
    response = client.post("/invocations", data=CSV, content_type="text/csv")
    assert response.get_json() == {"predictions": ["setosa", "virginica"]}
    assert client.get("/ping").status_code == 200
    assert client.get("/version").get_data(as_text=True) == "v1.0.0"


@pytest.mark.parametrize("body, content_type, status, message", [
    ({"instances": [ROW], "inputs": [ROW]}, "application/json", 400,
     "the body must hold exactly one of dataframe_split, dataframe_records, instances, inputs; got inputs, instances"),
    ({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [ROW]}}, "application/json", 400,
     f'"dataframe_split"."columns" must name each of the model\'s columns once: {FEATURES}'),
    ("a,b\n1,2\n", "text/csv", 400, f"the CSV header must name each of the model's columns once: {FEATURES}"),
    (",".join(FEATURES) + "\n1,x,3,4\n", "text/csv", 400,
     "CSV row 0 column 'sepal width (cm)' is 'x'; expected a number"),
    ("x", "text/plain", 415, "unsupported Content-Type 'text/plain': send application/json or text/csv"),
])
def test_mlflow_errors_are_in_mlflows_shape(client, body, content_type, status, message):
    data = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/invocations", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.get_json() == {"error_code": "BAD_REQUEST", "message": message, "error": message,
                                   "status": status}


def test_every_protocol_is_traffic_and_kept_for_the_shadow_report(client):
    marked = {"X-Bluegreen-Record": "1"}
    client.post("/predict", json={"x": ROW}, headers={**marked, "X-Request-ID": "p"})
    client.post("/v2/models/iris/infer", json=oip_json([ROW]), headers={**marked, "X-Request-ID": "o"})
    client.post("/v1/models/iris:predict", json={"instances": [ROW]}, headers={**marked, "X-Request-ID": "k"})
    client.post("/invocations", data=CSV, content_type="text/csv", headers={**marked, "X-Request-ID": "m"})
    client.post("/v2/models/iris/infer", json=oip_json([ROW]), headers={"X-Route-Color": "green"})
    stats = live(client)
    assert stats["requests"] == 5 and stats["failovers"] == 1 and stats["latency_buckets"]["+Inf"] == 5
    records = {r["id"]: r["predictions"] for r in client.get("/records").get_json()["records"]}
    assert records == {"p": ["setosa"], "o": ["setosa"], "k": ["setosa"], "m": ["setosa", "virginica"]}
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/v2/models/<name>/infer",method="POST",status="200"} 2.0' in text
    # One increment per class per request, not one per row: 6 rows, 5 requests.
    assert 'bluegreen_predictions_total{class_name="setosa"} 5.0' in text


def test_a_mirrored_copy_of_an_oip_request_is_nobodys_traffic(client):
    response = client.post("/v2/models/iris/infer", json=oip_json([ROW]), headers={"X-Bluegreen-Shadow": "1"})
    assert response.status_code == 200 and live(client)["requests"] == 0


def test_the_body_limit_holds_on_every_protocol(shipped_models):
    for fast in ("on", "off"):
        client = create_app({"MODELS_DIR": str(shipped_models), "MAX_CONTENT_LENGTH": 1000,
                             "FAST_PATH": fast}).test_client()
        response = client.post("/invocations", json={"instances": [ROW] * 100})
        assert response.status_code == 413
        assert response.get_json()["message"] == "request body too large: the limit is 1000 bytes"


def test_predict_answers_keep_their_layout_for_line_oriented_clients(client):
    # utils/test_req.sh and a grep match '"prediction": "setosa"': the answer is laid out as always.
    single = client.post("/predict", json={"x": ROW}).get_data()
    assert b'{"prediction": "setosa", "probabilities": {"setosa": ' in single
    batch = client.post("/predict", json={"instances": [ROW, VIRGINICA]}).get_data()
    assert json.loads(batch)["predictions"][1]["prediction"] == "virginica" and b'"predictions": [{' in batch
    error = client.post("/predict", json={"x": [1, 2, 3]}).get_data()
    assert error == b'{"error": "\\"x\\" has 3 values; expected 4 numbers", "status": 400}'
