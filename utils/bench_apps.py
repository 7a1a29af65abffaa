"""Baselines the benchmark (utils/benchmark.py) serves beside the stack, in one run.

* ``trivial``: an empty Flask endpoint on every path (no hooks, no metrics, the body not
  even read), run under gunicorn gthread with the colors' workers and threads, behind a
  plain nginx with upstream keep-alive and behind the front door's own config: the
  ceilings the hot path is measured against.
* ``original``: a stand-in for the project's original single-file app: Flask's development
  server, the RandomForest unpickled with joblib and called through scikit-learn on every
  request, JSON in and out (``python utils/bench_apps.py original MODEL_FILE PORT``).
"""

from __future__ import annotations

import sys

from flask import Flask, jsonify, request

trivial = Flask("trivial")


@trivial.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@trivial.route("/<path:path>", methods=["GET", "POST"])
def empty(path):
    return "ok"


def serve_original(model_file: str, port: int) -> None:
    import joblib
    import numpy as np

    model = joblib.load(model_file)
    app = Flask("original")

    @app.post("/predict")
    def predict():
        body = request.get_json(force=True)
        row = np.array([body["x"]], dtype=float)
        label = model.predict(row)[0]
        probabilities = model.predict_proba(row)[0]
        return jsonify({"prediction": str(label), "probabilities": [float(p) for p in probabilities]})

    app.run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    serve_original(sys.argv[2], int(sys.argv[3]))
