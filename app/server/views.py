"""HTTP API: thin views over ``ModelServer``.

Every response carries ``X-Model-Version``, ``X-Color`` and ``X-Request-ID``; every
non-2xx body has the JSON shape of ``app.errors``.
"""

from __future__ import annotations

import os
import re
import time

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from app.errors import InvalidInput, ModelNotReady
from app.server.auth import require_bearer
from app.server.responses import json_response
from app.server.serving import ModelServer
from app.server.validation import check_content_type, parse_json_object, parse_labels, parse_rows

bp = Blueprint("api", __name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
PREDICT_EXAMPLE = '{"x": [5.1, 3.5, 1.4, 0.2]} or {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}'
FEEDBACK_EXAMPLE = '{"x": [5.1, 3.5, 1.4, 0.2], "label": "setosa"}'


def server() -> ModelServer:
    return current_app.extensions["model_server"]


def read_payload(example: str) -> dict:
    # The raw header, not request.mimetype: Werkzeug's option parsing is a hot-path cost.
    check_content_type(request.environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower())
    try:
        raw = request.get_data(cache=False)
    except HTTPException:
        raise
    except Exception as exc:
        # Reading the body is where a broken chunked encoding or a vanished client shows
        # (gunicorn raises its parse errors from the input stream): the client's doing.
        raise InvalidInput(f"the request body could not be read ({type(exc).__name__}: {exc}); "
                           f"expected a JSON object like {example}") from exc
    return parse_json_object(raw, example)


@bp.before_app_request
def start_request():
    g.started = time.perf_counter()
    incoming = request.environ.get("HTTP_X_REQUEST_ID")
    g.request_id = incoming if incoming and REQUEST_ID.match(incoming) else os.urandom(16).hex()


@bp.after_app_request
def finish_request(response: Response) -> Response:
    srv = server()
    response.headers["X-Model-Version"] = srv.version
    response.headers["X-Color"] = srv.color
    response.headers["X-Request-ID"] = g.get("request_id", "")
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    shadow = bool(request.environ.get("HTTP_X_BLUEGREEN_SHADOW"))
    if endpoint == "/predict" and (shadow or request.environ.get("HTTP_X_BLUEGREEN_RECORD")):
        record_answer(srv, response.status_code, shadow)
    if shadow:
        # A copy nginx mirrored from the front door: its answer is thrown away, and it is
        # nobody's traffic here (a later bake must not judge it): counted apart only.
        srv.metrics.shadow_requests.labels(str(response.status_code)).inc()
        return response
    srv.metrics.request_counter(endpoint, request.method, str(response.status_code)).inc()
    meant_for = request.environ.get("HTTP_X_ROUTE_COLOR")
    if meant_for and meant_for != srv.color:
        srv.metrics.failovers.inc()
    if "started" in g:
        srv.metrics.latency_for(endpoint, response.status_code).observe(time.perf_counter() - g.started)
    return response


def record_answer(srv: ModelServer, status: int, shadow: bool) -> None:
    """Keep this answer for the shadow report (app/server/records.py)."""
    took = (time.perf_counter() - g.started) * 1000 if "started" in g else None
    srv.records.append({"id": g.get("request_id", ""), "t": round(time.time(), 3), "status": status,
                        "ms": None if took is None else round(took, 3), "predictions": g.get("predictions"),
                        "version": srv.version, "shadow": shadow})


@bp.post("/predict")
def predict():
    srv = server()
    payload = read_payload(PREDICT_EXAMPLE)
    rows, single = parse_rows(payload, srv.n_features, srv.settings["MAX_BATCH_ROWS"], srv.input_limit)
    items = srv.predict(rows, single)
    g.predictions = [item["prediction"] for item in items]
    if single:
        body = dict(items[0], version=srv.version, color=srv.color, request_id=g.request_id)
    else:
        body = {"predictions": items, "version": srv.version, "color": srv.color, "request_id": g.request_id}
    return json_response(body)


@bp.post("/feedback")
def feedback():
    srv = server()
    # Before the body is read: refused feedback costs nothing and is never counted.
    require_bearer(srv.settings["FEEDBACK_TOKEN"], request.environ.get("HTTP_AUTHORIZATION"), "POST /feedback",
                   "set FEEDBACK_TOKEN or FEEDBACK_TOKEN_FILE")
    payload = read_payload(FEEDBACK_EXAMPLE)
    rows, single = parse_rows(payload, srv.n_features, srv.settings["MAX_BATCH_ROWS"], srv.input_limit)
    labels = parse_labels(payload, single, len(rows), srv.class_names)
    labelled = payload.get("request_id")
    if labelled is not None and not (isinstance(labelled, str) and REQUEST_ID.match(labelled)):
        raise InvalidInput('"request_id" must be the request_id a /predict answer gave (letters, digits, ".", '
                           '"_" or "-", at most 128)')
    body = srv.record_feedback(rows, labels, single)
    if labelled:  # the labels of that prediction, for the shadow report
        srv.records.append({"id": labelled, "t": round(time.time(), 3), "labels": labels})
    body.update(version=srv.version, color=srv.color, request_id=g.request_id)
    return json_response(body)


@bp.get("/health")
def health():
    body = server().health()
    return json_response(body, 200 if body["status"] == "ok" else 503)


@bp.get("/livez")
def livez():
    return json_response({"status": "alive"})


@bp.get("/ready")
def ready():
    srv = server()
    if not srv.is_ready():
        raise ModelNotReady("draining: the server is shutting down")
    return json_response({"status": "ready", "version": srv.version, "color": srv.color})


def require_metrics_token(srv, what: str) -> None:
    """The operator's endpoints (/metrics, /records) need METRICS_TOKEN when one is set."""
    if srv.settings["METRICS_TOKEN"]:
        require_bearer(srv.settings["METRICS_TOKEN"], request.environ.get("HTTP_AUTHORIZATION"), what,
                       "set METRICS_TOKEN")


@bp.get("/metrics")
def metrics():
    srv = server()
    require_metrics_token(srv, "GET /metrics")
    return Response(srv.metrics.exposition(), mimetype="text/plain; version=0.0.4")


@bp.get("/records")
def records():
    """The answers kept for the shadow report since ``?since=`` (a Unix time); never proxied."""
    srv = server()
    require_metrics_token(srv, "GET /records")
    try:
        since = float(request.args.get("since", "0"))
    except ValueError:
        raise InvalidInput('"since" must be a Unix time in seconds') from None
    return json_response({"color": srv.color, "version": srv.version, "dropped": srv.records.dropped,
                          "records": srv.records.read(since)})


@bp.get("/openapi.json")
def openapi():
    return json_response(current_app.extensions["openapi"])
