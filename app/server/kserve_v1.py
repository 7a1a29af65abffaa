"""KServe's v1 protocol (TensorFlow Serving's REST shape): ``POST /v1/models/{name}:predict``.

``{"instances": [[4 numbers], ...]}`` in, ``{"predictions": [label, ...], "probabilities":
[[...], ...]}`` out; errors are ``{"error": ...}`` (with the project's ``status`` beside it).
"""

from __future__ import annotations

import numpy as np

from app.errors import InvalidInput
from app.server.calls import Reply
from app.server.codec import decode_object, encode
from app.server.oip import check_model
from app.server.validation import check_content_type, parse_table

PREDICT_EXAMPLE = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def metadata(srv, call) -> Reply:
    """``GET /v1/models/{name}``: whether the model is ready."""
    check_model(srv, call.params["name"], None)
    return Reply(200, encode({"name": srv.model_name, "version": srv.version, "ready": srv.is_ready()}))


def predict(srv, call) -> Reply:
    """``POST /v1/models/{name}:predict``."""
    check_model(srv, call.params["name"], None)
    check_content_type(call.mimetype)
    raw = call.body
    payload = decode_object(raw, PREDICT_EXAMPLE)
    if "instances" not in payload:
        raise InvalidInput(f'missing "instances": expected {PREDICT_EXAMPLE}')
    rows = parse_table(payload["instances"], '"instances"', srv.n_features, srv.settings["MAX_BATCH_ROWS"],
                       srv.input_limit, raw)
    labels, probabilities = srv.answer(rows)
    call.exchange.predictions = labels
    return Reply(200, encode({"predictions": labels,
                              "probabilities": probabilities.astype(np.float64).round(6).tolist()}))
