"""The inference protocols and version pins through a real stack (gunicorn and nginx), with the
unmodified Triton client, KServe v1 and MLflow's documented request shapes over plain HTTP.

kserve's own client is not used: kserve 0.21.0 needs protobuf<7 and the server pins 7.36.2.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.helpers import Stack

pytestmark = pytest.mark.integration

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@pytest.fixture(scope="module")
def stack(shipped_models, tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("protocols"), shipped_models) as stack:  # blue v1.0.0 active, green v1.1.0
        yield stack


@pytest.fixture
def client(stack):
    client = triton.InferenceServerClient(url=stack.front.removeprefix("http://"))
    yield client
    client.close()


def inputs(binary: bool) -> list:
    tensor = triton.InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS, binary_data=binary)
    return [tensor]


def test_triton_client_reads_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    meta = client.get_model_metadata("iris")
    assert meta["versions"] == ["v1.0.0"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "json tensors"])
def test_triton_client_infers(client, binary):
    outputs = None if binary else [triton.InferRequestedOutput(name, binary_data=False)
                                   for name in ("label", "probabilities")]
    result = client.infer("iris", inputs(binary), outputs=outputs)
    assert result.get_response()["model_version"] == "v1.0.0"
    assert [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")] == [
        "setosa", "virginica"]
    assert result.as_numpy("probabilities").shape == (2, 3)


def test_a_pinned_version_is_answered_by_the_idle_color(stack, client):
    result = client.infer("iris", inputs(True), model_version="v1.1.0")
    assert result.get_response()["model_version"] == "v1.1.0"
    assert client.get_model_metadata("iris", model_version="v1.1.0")["versions"] == ["v1.1.0"]
    response = requests.post(stack.front + "/predict", json={"x": ROWS[0].tolist()},
                             headers={"X-Model-Version": "v1.1.0"}, timeout=5)
    assert response.status_code == 200 and response.headers["X-Color"] == "green"
    assert response.json()["version"] == "v1.1.0"
    unpinned = requests.post(stack.front + "/predict", json={"x": ROWS[0].tolist()}, timeout=5)
    assert unpinned.headers["X-Color"] == "blue"


def test_a_pin_no_color_serves_is_a_json_404_naming_the_versions_served(stack, client):
    with pytest.raises(InferenceServerException, match="served: v1.0.0 \\(blue\\), v1.1.0 \\(green\\)"):
        client.infer("iris", inputs(True), model_version="v9.9.9")
    for headers, path in (({"X-Model-Version": "v9.9.9"}, "/predict"), ({"X-Model-Version": "latest"}, "/predict"),
                          ({}, "/v2/models/iris/versions/v9.9.9/infer")):
        response = requests.post(stack.front + path, json={"x": ROWS[0].tolist()}, headers=headers, timeout=5)
        assert response.status_code == 404 and response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert body["status"] == 404 and body["versions"] == ["v1.0.0", "v1.1.0"]


def test_pins_follow_a_switch_without_a_reload(stack, client):
    generation = requests.get(stack.front + "/__bluegreen/generation", timeout=5).text
    stack.cli("switch", "green")
    try:
        result = client.infer("iris", inputs(True), model_version="v1.0.0")
        assert result.get_response()["model_version"] == "v1.0.0"
        assert client.infer("iris", inputs(True)).get_response()["model_version"] == "v1.1.0"
    finally:
        stack.cli("switch", "blue")
    assert requests.get(stack.front + "/__bluegreen/generation", timeout=5).text == generation


def test_kserve_v1_over_plain_http(stack):
    assert requests.get(stack.front + "/v1/models/iris", timeout=5).json()["ready"] is True
    response = requests.post(stack.front + "/v1/models/iris:predict", json={"instances": ROWS.tolist()}, timeout=5)
    assert response.json()["predictions"] == ["setosa", "virginica"]
    pinned = requests.post(stack.front + "/v1/models/iris:predict", json={"instances": ROWS.tolist()},
                           headers={"X-Model-Version": "v1.1.0"}, timeout=5)
    assert pinned.headers["X-Model-Version"] == "v1.1.0"


@pytest.mark.parametrize("body, content_type", [
    ({"dataframe_split": {"columns": FEATURES, "data": ROWS.tolist()}}, "application/json"),
    ({"dataframe_records": [dict(zip(FEATURES, row)) for row in ROWS.tolist()]}, "application/json"),
    ({"instances": ROWS.tolist()}, "application/json"),
    ({"inputs": ROWS.tolist()}, "application/json"),
    (",".join(FEATURES) + "\n" + "\n".join(",".join(map(str, row)) for row in ROWS.tolist()) + "\n", "text/csv"),
])
def test_mlflow_request_shapes(stack, body, content_type):
    data = body if isinstance(body, str) else None
    response = requests.post(stack.front + "/invocations", json=None if data else body, data=data,
                             headers={"Content-Type": content_type}, timeout=5)
    assert response.status_code == 200 and response.json() == {"predictions": ["setosa", "virginica"]}
    assert requests.get(stack.front + "/ping", timeout=5).status_code == 200


def test_every_protocol_counts_as_the_colors_traffic(stack, client):
    before = requests.get(f"http://127.0.0.1:{stack.blue_port}/health", timeout=5).json()["live"]["requests"]
    client.infer("iris", inputs(True))
    requests.post(stack.front + "/invocations", json={"instances": ROWS.tolist()}, timeout=5)
    requests.post(stack.front + "/v1/models/iris:predict", json={"instances": ROWS.tolist()}, timeout=5)
    after = requests.get(f"http://127.0.0.1:{stack.blue_port}/health", timeout=5).json()["live"]["requests"]
    assert after - before == 3


def test_a_shadow_mirrors_and_pairs_every_protocols_predictions(shipped_models, tmp_path):
    with Stack(tmp_path, shipped_models) as stack:
        stack.cli("shadow", "start", "v1.1.0", "--sample", "100")
        calls = [("/predict", {"x": ROWS[1].tolist()}), ("/v1/models/iris:predict", {"instances": ROWS.tolist()}),
                 ("/invocations", {"instances": ROWS.tolist()}),
                 ("/v2/models/iris/infer", {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                                        "data": ROWS.reshape(-1).tolist()}]})]
        with requests.Session() as session:
            for _ in range(5):
                for path, body in calls:
                    answer = session.post(stack.front + path, json=body, timeout=5)
                    assert answer.status_code == 200 and answer.headers["X-Color"] == "blue", (path, answer.text)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            report = json.loads(stack.cli("shadow", "report", "--json").stdout)
            if report["paired"] >= 20:
                break
            time.sleep(0.5)
        assert report["sampled"] == 20 and report["paired"] == 20, report
        assert report["shadow"]["errors"] == report["active"]["errors"] == 0
        stack.cli("shadow", "stop")
