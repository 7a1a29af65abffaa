"""A model that fails on a well-formed input is the model's fault: a 5xx naming the model and
version, counted as that version's server error, never a 400 that blames the client."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from app.server import create_app
from app.training.data import iris_split
from app.training.register import register_version


@pytest.fixture(scope="module")
def log_models(shipped_models, tmp_path_factory):
    """The shipped versions, and v1.2.0: a pipeline taking the log of its input, registered
    from a joblib file with --trust-pickle (log of 0 is -inf, of a negative number NaN)."""
    models_dir = tmp_path_factory.mktemp("log-models")
    for path in shipped_models.iterdir():
        (models_dir / path.name).write_bytes(path.read_bytes())
    x_train, _, y_train, _, _ = iris_split()
    pipeline = make_pipeline(FunctionTransformer(np.log), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    artifact = tmp_path_factory.mktemp("upload") / "log.joblib"
    joblib.dump(pipeline, artifact)
    register_version("v1.2.0", artifact, models_dir, trust_pickle=True)
    return models_dir


@pytest.fixture(params=["on", "off"], ids=["hot path", "flask"])
def client(request, log_models):
    return create_app({"MODELS_DIR": str(log_models), "MODEL_VERSION": "v1.2.0", "COLOR": "green",
                       "FAST_PATH": request.param}).test_client()


@pytest.mark.parametrize("row", [[0, 0, 0, 0], [-1, 3, 4.2, 1.5]])
def test_a_model_answering_nan_is_a_500_naming_the_model_and_version(client, row):
    response = client.post("/predict", json={"x": row}, headers={"X-Bluegreen-Record": "1", "X-Request-ID": "r"})
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error.startswith('model iris v1.2.0 answered a probability that is not a number for "x"')
    assert "the model is at fault, not the request" in error and "too large" not in error
    live = client.get("/health").get_json()["live"]
    assert live["requests"] == 1 and live["server_errors"] == 1 and live["error_rate"] == 1.0
    assert client.get("/records").get_json()["records"][0]["status"] == 500
    assert 'endpoint="/predict",method="POST",status="500"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_the_same_model_answers_inputs_it_can_compute(client):
    response = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert response.status_code == 200


@pytest.mark.parametrize("path, body, key", [
    ("/v2/models/iris/infer", {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                           "data": [0, 0, 0, 0]}]}, "error"),
    ("/v1/models/iris:predict", {"instances": [[0, 0, 0, 0]]}, "error"),
    ("/invocations", {"instances": [[0, 0, 0, 0]]}, "message"),
])
def test_every_protocol_answers_the_models_failure_as_a_500(client, path, body, key):
    response = client.post(path, json=body)
    assert response.status_code == 500
    assert response.get_json()[key].startswith("model iris v1.2.0 answered a probability that is not a number")


def test_a_model_that_raises_is_a_500_naming_it(shipped_models, monkeypatch):
    app = create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.1.0"})
    predictor = app.extensions["model_server"].predictor

    def broken(rows):
        raise RuntimeError("the runtime is gone")

    monkeypatch.setattr(predictor, "predict_proba", broken)
    response = app.test_client().post("/predict", json={"x": [5.1, 3.5, 1.4, 0.2]})
    assert response.status_code == 500
    assert response.get_json()["error"] == ("model iris v1.1.0 failed on this input (RuntimeError: the runtime is "
                                            "gone); the model is at fault, not the request")
    assert app.test_client().get("/health").get_json()["live"]["server_errors"] == 1
