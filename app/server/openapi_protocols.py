"""The inference protocols' part of the OpenAPI document (``app/server/openapi.py``).

Each protocol's routes with its own request and answer shapes: the Open Inference Protocol
v2, KServe v1 and MLflow's scoring server. Their errors keep the ``Error`` shape (MLflow's
add ``error_code`` and ``message`` to it).
"""

from __future__ import annotations

from app.server.oip import NUMERIC, OUTPUTS

# MLflow's errors add error_code and message to the Error shape; nginx's and Flask's own
# answers on the same paths (405, 413, 429, a pin no color serves) are the Error shape.
ERROR = {"$ref": "#/components/schemas/Error"}


def _answers(ok: dict, error: dict, *statuses: str) -> dict:
    texts = {"400": "the request is not what the protocol expects; the message says what was wrong",
             "404": "unknown model name, or a version (path or X-Model-Version) this color does not serve",
             "405": "method not allowed for this endpoint", "413": "request body too large",
             "415": "unsupported Content-Type", "429": "too many requests from this client (nginx's rate limit)",
             "503": "the model is loading or the server is draining",
             "default": "any other error, from the app, gunicorn or nginx"}
    answers = {"200": ok}
    for status in (*statuses, "405", "default"):
        answers[status] = {"description": texts[status], "content": {"application/json": {"schema": error}}}
    return answers


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, value: str) -> dict:
    # The one value this color serves, so a fuzzer reaches the model; any other is a 404.
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "enum": [value]}}


PIN = {"name": "X-Model-Version", "in": "header", "required": False, "schema": {"type": "string"},
       "description": "Pin the request to a version: nginx sends it to the color serving it; a color that "
                      "serves another version answers 404"}


def protocol_paths(model_name: str, version: str, feature_names: list[str], n_classes: int, max_rows: int) -> dict:
    """The paths of the inference protocols (the schemas they name are in ``protocol_schemas``)."""
    rows = {"$ref": "#/components/schemas/Rows"}
    ready = {"type": "object", "required": ["ready"], "properties": {"ready": {"const": True}}}
    model = [_param("name", model_name)]
    versioned = [_param("name", model_name), _param("version", version)]
    metadata = _answers(_json({"$ref": "#/components/schemas/ModelMetadata"}, "the model's input and outputs"),
                        ERROR, "404")
    model_ready = _answers(_json({"type": "object", "required": ["name", "ready"]}, "ready"), ERROR, "404", "503")
    infer = {
        "summary": f"Open Inference Protocol v2 inference on {model_name}: one [N, {len(feature_names)}] input; "
                   "outputs label (BYTES) and probabilities (FP32); binary tensors with "
                   "Inference-Header-Content-Length",
        "parameters": [PIN],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/InferRequest"}}}},
        "responses": {
            **_answers({"description": "the outputs, as JSON data or (binary_data) after a JSON header",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                                    "application/octet-stream": {"schema": {"type": "string",
                                                                            "format": "binary"}}}},
                       ERROR, "400", "404", "413", "429")},
    }
    mlflow_body = {"oneOf": [
        {"type": "object", "required": [field], "additionalProperties": False,
         "properties": {field: schema, "params": {"type": "object"}}}
        for field, schema in (
            ("dataframe_split", {"type": "object", "required": ["data"],
                                 "properties": {"columns": {"type": "array", "items": {"enum": feature_names},
                                                            "minItems": len(feature_names),
                                                            "maxItems": len(feature_names), "uniqueItems": True},
                                                "data": rows}}),
            ("dataframe_records", {"type": "array", "minItems": 1, "maxItems": max_rows, "items": {
                "type": "object", "required": feature_names, "additionalProperties": False,
                "properties": {name: {"$ref": "#/components/schemas/Value"} for name in feature_names}}}),
            ("instances", rows), ("inputs", rows))]}
    return {
        "/v2": {"get": {"operationId": "oipServerMetadata", "summary": "Open Inference Protocol: server metadata",
                        "responses": _answers(_json({"type": "object", "required": ["name", "version", "extensions"]},
                                                    "name, version, extensions"), ERROR)}},
        "/v2/health/live": {"get": {"operationId": "oipLive", "summary": "200 while the process runs",
                                    "responses": _answers(_json({"type": "object", "required": ["live"]}, "live"),
                                                          ERROR)}},
        "/v2/health/ready": {"get": {"operationId": "oipReady", "summary": "200 once the model is loaded and warmed",
                                     "responses": _answers(_json(ready, "ready"), ERROR, "503")}},
        "/v2/models/{name}": {"get": {"operationId": "oipModelMetadata", "summary": "the model's input and outputs",
                                      "parameters": [*model, PIN], "responses": metadata}},
        "/v2/models/{name}/versions/{version}": {"get": {
            "operationId": "oipModelVersionMetadata", "summary": "the input and outputs of one version (pinned)",
            "parameters": versioned, "responses": metadata}},
        "/v2/models/{name}/ready": {"get": {"operationId": "oipModelReady", "summary": "whether the model is ready",
                                            "parameters": [*model, PIN], "responses": model_ready}},
        "/v2/models/{name}/versions/{version}/ready": {"get": {
            "operationId": "oipModelVersionReady", "summary": "whether one version is ready (pinned)",
            "parameters": versioned, "responses": model_ready}},
        "/v2/models/{name}/infer": {"post": {"operationId": "oipInfer", **infer,
                                             "parameters": [*model, PIN]}},
        "/v2/models/{name}/versions/{version}/infer": {"post": {"operationId": "oipVersionInfer", **infer,
                                                                "parameters": versioned}},
        "/v1/models/{name}": {"get": {"operationId": "kserveV1Model", "summary": "KServe v1: whether the model is "
                                                                              "ready",
                                      "parameters": [*model, PIN],
                                      "responses": _answers(_json({"type": "object", "required": ["name", "ready"]},
                                                                  "the model"), ERROR, "404")}},
        "/v1/models/{name}:predict": {"post": {
            "operationId": "kserveV1Predict", "summary": "KServe v1 prediction: a label per instance",
            "parameters": [*model, PIN],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["instances"], "properties": {"instances": rows}}}}},
            "responses": _answers(_json({"type": "object", "required": ["predictions"], "properties": {
                "predictions": {"type": "array", "items": {"type": "string"}},
                "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"},
                                                             "minItems": n_classes, "maxItems": n_classes}}}},
                                        "one label per instance"), ERROR, "400", "404", "413", "415", "429")}},
        "/invocations": {"post": {
            "operationId": "mlflowInvocations",
            "summary": "MLflow scoring server: exactly one of dataframe_split, dataframe_records, instances, "
                       "inputs; or text/csv with a header row naming the columns",
            "parameters": [PIN],
            "requestBody": {"required": True, "content": {"application/json": {"schema": mlflow_body},
                                                          "text/csv": {"schema": {"type": "string"}}}},
            "responses": _answers(_json({"type": "object", "required": ["predictions"], "properties": {
                "predictions": {"type": "array", "items": {"type": "string"}}}}, "one label per row"),
                ERROR, "400", "404", "413", "415", "429")}},
        "/ping": {"get": {"operationId": "mlflowPing", "summary": "MLflow scoring server: 200 once ready",
                          "responses": _answers(_json({"type": "object"}, "ready"), ERROR, "503")}},
        "/version": {"get": {"operationId": "mlflowVersion", "summary": "the model version this color serves",
                             "responses": _answers({"description": "the version", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}}, ERROR)}},
    }


def protocol_schemas(n_features: int, n_classes: int, max_rows: int, max_abs: float) -> dict:
    """The schemas ``protocol_paths`` names."""
    tensor = {"type": "object", "required": ["name", "datatype", "shape"],
              "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer"}}}}
    return {
        "Value": {"type": "number", "minimum": -max_abs, "maximum": max_abs},
        "Rows": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}, "minItems": 1, "maxItems": max_rows},
        "ModelMetadata": {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
                          "properties": {"inputs": {"type": "array", "items": tensor},
                                         "outputs": {"type": "array", "items": tensor}}},
        "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {"name": {"type": "string", "minLength": 1}, "datatype": {"enum": list(NUMERIC)},
                               "shape": {"type": "array", "minItems": 2, "maxItems": 2,
                                         "prefixItems": [{"type": "integer", "minimum": 1, "maximum": max_rows},
                                                         {"const": n_features}]},
                               "data": {"type": "array", "items": {"$ref": "#/components/schemas/Value"}},
                               "parameters": {"type": "object"}}}},
            "outputs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"enum": list(OUTPUTS)},
                               "parameters": {"type": "object",
                                              "properties": {"binary_data": {"type": "boolean"}}}}}}}},
        "InferResponse": {"type": "object", "required": ["model_name", "model_version", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": tensor, "minItems": 1}}},
    }
