"""HTTP API: thin views over ``ModelServer``, and Flask's entry point to every inference route.

The inference routes (``app/server/routes.py``) run the same ``Route`` handlers here as in
the hot path (``app/server/hotpath.py``), which answers their POSTs in front of Flask when
``FAST_PATH`` is on; Flask's hooks do the ``Exchange``'s bookkeeping for what Flask answers.
Every response carries ``X-Model-Version``, ``X-Color`` and ``X-Request-ID``; every
non-2xx body has the JSON shape of ``app.errors`` (or the protocol's own, which extends it).
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.errors import InvalidInput, ModelNotReady, RequestTooLarge
from app.server.auth import require_bearer
from app.server.calls import Call, answer, check_pin
from app.server.exchange import REQUEST_ID, Exchange
from app.server.responses import json_response
from app.server.routes import ROUTES, ModelNameConverter
from app.server.serving import ModelServer
from app.server.validation import check_content_type, parse_json_object, parse_labels, parse_rows

bp = Blueprint("api", __name__)

FEEDBACK_EXAMPLE = '{"x": [5.1, 3.5, 1.4, 0.2], "label": "setosa"}'


def server() -> ModelServer:
    return current_app.extensions["model_server"]


def read_body() -> bytes:
    """The request body through Flask (its MAX_CONTENT_LENGTH), errors as ApiErrors."""
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise RequestTooLarge(f"request body too large: the limit is {current_app.config['MAX_CONTENT_LENGTH']} "
                              "bytes") from None
    except Exception as exc:
        # Reading the body is where a broken chunked encoding or a vanished client shows
        # (gunicorn raises its parse errors from the input stream): the client's doing.
        raise InvalidInput(f"the request body could not be read ({type(exc).__name__}: {exc})") from exc


def read_payload(example: str) -> dict:
    # The raw header, not request.mimetype: Werkzeug's option parsing is a hot-path cost.
    check_content_type(request.environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower())
    try:
        raw = request.get_data(cache=False)
    except HTTPException:
        raise
    except Exception as exc:
        raise InvalidInput(f"the request body could not be read ({type(exc).__name__}: {exc}); "
                           f"expected a JSON object like {example}") from exc
    return parse_json_object(raw, example)


@bp.before_app_request
def start_request():
    g.exchange = Exchange(request.environ)


@bp.after_app_request
def finish_request(response: Response) -> Response:
    exchange = g.get("exchange") or Exchange(request.environ)
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    response.headers.extend(exchange.finish(server(), request.environ, endpoint, response.status_code))
    return response


def route_view(route):
    """A Flask view running ``route``: the same handler the hot path runs, behind Flask."""

    def view(**params):
        reply = answer(server(), route, Call(request.environ, params, g.exchange, read_body))
        return Response(reply.body, status=reply.status, content_type=reply.content_type, headers=list(reply.headers))

    return view


@bp.record_once
def add_converters(state) -> None:
    state.app.url_map.converters["model"] = ModelNameConverter


for _index, (_method, _rule, _route) in enumerate(ROUTES):
    bp.add_url_rule(_rule, endpoint=f"route_{_index}", view_func=route_view(_route), methods=[_method])


@bp.post("/feedback")
def feedback():
    srv = server()
    # Before the body is read: refused feedback costs nothing and is never counted.
    require_bearer(srv.settings["FEEDBACK_TOKEN"], request.environ.get("HTTP_AUTHORIZATION"), "POST /feedback",
                   "set FEEDBACK_TOKEN or FEEDBACK_TOKEN_FILE")
    check_pin(srv, request.environ)
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
    body.update(version=srv.version, color=srv.color, request_id=g.exchange.request_id)
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
