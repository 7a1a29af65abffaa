"""The hot path: a WSGI callable in front of the Flask app that answers the prediction routes.

Flask's per-request machinery (request context, hooks, URL matching, response objects)
cost about 109 µs of a single-row request here, against about 7 µs for a bare WSGI
callable (docs/PERFORMANCE.md). The POST routes of every inference protocol are answered
here, by the same ``Route`` handlers, ``Exchange`` bookkeeping and error shapes as Flask's
views (``app/server/calls.py``); everything else goes to Flask unchanged
(docs/adr/0016-inference-protocols-pins-and-the-hot-path.md).
"""

from __future__ import annotations

from http import HTTPStatus

from app.server.calls import Call, answer, read_wsgi_body
from app.server.exchange import Exchange
from app.server.routes import match_hot

STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class HotPath:
    """``app.wsgi_app``: the prediction routes answered here, the rest by ``flask_wsgi``."""

    def __init__(self, flask_wsgi, srv, max_body_bytes: int):
        self.flask_wsgi = flask_wsgi
        self.srv = srv
        self.limit = max_body_bytes

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            match = match_hot(environ.get("PATH_INFO", ""))
            if match is not None:
                return self.serve(environ, start_response, *match)
        return self.flask_wsgi(environ, start_response)

    def serve(self, environ, start_response, route, params):
        srv, limit = self.srv, self.limit
        exchange = Exchange(environ)
        reply = answer(srv, route, Call(environ, params, exchange, lambda: read_wsgi_body(environ, limit)))
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))),
                   *reply.headers, *exchange.finish(srv, environ, route.label, reply.status)]
        start_response(STATUS_LINES[reply.status], headers)
        return [reply.body]
