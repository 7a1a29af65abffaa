"""The OpenAPI 3.1 document of one color's HTTP API, served at ``GET /openapi.json``.

Built once in the factory from what this color actually enforces (feature count, class
names, batch limit, the numeric range of its input type), so a client generator or a
fuzzer (``tests/integration/test_fuzz.py``) works from the real limits. Every non-2xx
answer, whoever produced it (the app, gunicorn or nginx), has the ``Error`` shape.
"""

from __future__ import annotations

from app.server.openapi_protocols import protocol_paths, protocol_schemas

ERROR = {"$ref": "#/components/schemas/Error"}

# Statuses every endpoint can answer: nginx's and gunicorn's own refusals of malformed
# requests, rate limits, and an unavailable upstream are all in the Error shape too.
COMMON_ERRORS = {
    "405": "method not allowed for this endpoint",
    "default": "any other error, from the app, gunicorn or nginx",
}


def _errors(*statuses: tuple[str, str]) -> dict:
    answers = dict(statuses)
    answers.update(COMMON_ERRORS)
    return {status: {"description": text, "content": {"application/json": {"schema": ERROR}}}
            for status, text in answers.items()}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build_openapi(version: str, n_features: int, class_names: list[str], max_rows: int, max_abs: float,
                  model_name: str = "iris", feature_names: list[str] | None = None) -> dict:
    """The document for a color serving ``version``.

    Args:
        version: the model version this color serves.
        n_features: numbers per row.
        class_names: the classes a prediction or a label may be.
        max_rows: the batch limit (``MAX_BATCH_ROWS``).
        max_abs: the largest magnitude the model's input type represents.
        model_name: the name the inference protocols address the model by.
        feature_names: the columns MLflow's dataframe shapes and CSV name.
    """
    feature_names = feature_names or [f"f{i}" for i in range(n_features)]
    number = {"type": "number", "minimum": -max_abs, "maximum": max_abs}
    row = {"type": "array", "items": number, "minItems": n_features, "maxItems": n_features}
    rows = {"type": "array", "items": {"$ref": "#/components/schemas/Row"}, "minItems": 1, "maxItems": max_rows}
    label = {"type": "string", "enum": list(class_names)}
    probabilities = {"type": "object", "additionalProperties": False, "required": list(class_names),
                     "properties": {name: {"type": "number", "minimum": 0, "maximum": 1} for name in class_names}}
    served_by = {"version": {"type": "string"}, "color": {"type": "string"}, "request_id": {"type": "string"}}
    item = {"type": "object", "required": ["prediction", "probabilities"],
            "properties": {"prediction": label, "probabilities": probabilities}}
    too_large = ("413", "request body too large")
    bad_input = ("400", "the body is not what the endpoint expects; the message says what was wrong")
    media = ("415", "a Content-Type other than JSON")
    not_ready = ("503", "the server is draining (shutting down)")
    limited = ("429", "too many requests from this client (nginx's rate limit)")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bluegreen model server",
            "version": version,
            "description": "One color of the blue-green iris model server. Every non-2xx answer is "
                           '{"error": "...", "status": N}.',
        },
        "paths": {
            "/predict": {"post": {
                "operationId": "predict",
                "summary": "Predict the class of one row or a batch",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "oneOf": [{"$ref": "#/components/schemas/Single"}, {"$ref": "#/components/schemas/Batch"}]}}}},
                "responses": {
                    "200": _json({"oneOf": [
                        {"type": "object", "required": ["prediction", "probabilities", *served_by],
                         "properties": {**item["properties"], **served_by}},
                        {"type": "object", "required": ["predictions", *served_by],
                         "properties": {"predictions": {"type": "array", "items": item}, **served_by}},
                    ]}, "one prediction per row"),
                    **_errors(bad_input, too_large, media, not_ready, limited),
                },
            }},
            "/feedback": {"post": {
                "operationId": "feedback",
                "summary": "True labels for rows: live accuracy (which can roll a version back)",
                "security": [{"feedbackToken": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"type": "object", "required": ["x", "label"],
                     "properties": {"x": {"$ref": "#/components/schemas/Row"}, "label": label}},
                    {"type": "object", "required": ["instances", "labels"],
                     "properties": {"instances": rows, "labels": {"type": "array", "items": label}}},
                ]}}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["recorded", "correct", "predictions", *served_by],
                                  "properties": {"recorded": {"type": "integer", "minimum": 1},
                                                 "correct": {"type": "integer", "minimum": 0},
                                                 "predictions": {"type": "array", "items": label}, **served_by}},
                                 "the labels were counted"),
                    **_errors(bad_input, ("401", "no bearer token, or a wrong one"),
                              ("403", "feedback is disabled: the server has no token"),
                              too_large, media, not_ready, limited),
                },
            }},
            "/health": {"get": {
                "operationId": "health",
                "summary": "Status, version, card metrics and live metrics",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Health"}, "serving"),
                    "503": _json({"oneOf": [{"$ref": "#/components/schemas/Health"}, ERROR]}, "draining"),
                    **_errors(limited),
                },
            }},
            "/ready": {"get": {
                "operationId": "ready",
                "summary": "200 while serving (the model is loaded and warmed before any answer); "
                           "503 while draining",
                "responses": {
                    "200": _json({"type": "object", "required": ["status", "version", "color"],
                                  "properties": {"status": {"const": "ready"}, **served_by}}, "ready"),
                    **_errors(not_ready),
                },
            }},
            "/livez": {"get": {
                "operationId": "livez",
                "summary": "200 while the process runs",
                "responses": {
                    "200": _json({"type": "object", "required": ["status"],
                                  "properties": {"status": {"const": "alive"}}}, "alive"),
                    **_errors(),
                },
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus exposition of this color (not proxied by the nginx doors)",
                "security": [{}, {"metricsToken": []}],
                "responses": {
                    "200": {"description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(("401", "METRICS_TOKEN is set and the request lacks it"),
                              ("404", "asked through an nginx door, which does not proxy /metrics")),
                },
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object", "required": ["openapi", "paths"]}, "the document"),
                              **_errors()},
            }},
            **protocol_paths(model_name, version, feature_names, len(class_names), max_rows),
        },
        "components": {
            "securitySchemes": {
                "feedbackToken": {"type": "http", "scheme": "bearer",
                                  "description": "FEEDBACK_TOKEN of the color (bluegreen token prints the local one)"},
                "metricsToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when it is set"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error", "status"],
                          "properties": {"error": {"type": "string"},
                                         "status": {"type": "integer", "minimum": 300, "maximum": 599}}},
                "Row": row,
                "Single": {"type": "object", "required": ["x"], "properties": {"x": row}},
                "Batch": {"type": "object", "required": ["instances"], "properties": {"instances": rows}},
                **protocol_schemas(n_features, len(class_names), max_rows, max_abs),
                "Health": {"type": "object", "required": ["status", "ready", "version", "color", "metrics", "live"],
                           "properties": {"status": {"enum": ["ok", "draining"]}, "ready": {"type": "boolean"},
                                          "version": {"type": "string"}, "color": {"type": "string"},
                                          "metrics": {"type": "object"}, "live": {"type": "object"}}},
            },
        },
    }
