"""The routes' names as metrics label them (Flask's rule strings), and which of them are traffic.

The hot path (``app/server/hotpath.py``) and Flask name a route the same way, so a request
is counted under one label whichever entry point answered it.
"""

from __future__ import annotations

PREDICT = "/predict"
FEEDBACK = "/feedback"
OIP_INFER = "/v2/models/<name>/infer"
OIP_VERSION_INFER = "/v2/models/<name>/versions/<version>/infer"
KSERVE_V1_PREDICT = "/v1/models/<name>:predict"
MLFLOW_INVOCATIONS = "/invocations"

# Answers kept for the shadow report and the paired checks (app/server/records.py).
PREDICTION_ENDPOINTS = frozenset({PREDICT, OIP_INFER, OIP_VERSION_INFER, KSERVE_V1_PREDICT, MLFLOW_INVOCATIONS})
# A color's traffic: what a bake, a canary step and `watch` judge (live_stats in /health).
TRAFFIC_ENDPOINTS = PREDICTION_ENDPOINTS | {FEEDBACK}
