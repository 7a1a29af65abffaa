"""One request's bookkeeping, the same for both entry points: its id, the X- headers, the
metrics and the records.

Flask's hooks (``app/server/views.py``) and the hot path (``app/server/hotpath.py``) each
make an ``Exchange`` when a request arrives and call ``finish`` with the status answered:
the headers every answer carries, the request counted once (status, latency, failover),
and a sampled prediction kept for the shadow report.
"""

from __future__ import annotations

import os
import re
import time

from app.server.endpoints import PREDICTION_ENDPOINTS

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class Exchange:
    """A request in progress: when it began, its id, the labels it was answered with."""

    __slots__ = ("started", "request_id", "predictions")

    def __init__(self, environ: dict):
        self.started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID")
        self.request_id = incoming if incoming and REQUEST_ID.match(incoming) else os.urandom(16).hex()
        self.predictions: list[str] | None = None

    def finish(self, srv, environ: dict, endpoint: str, status: int) -> list[tuple[str, str]]:
        """Count and record this answer; return the headers it carries.

        Args:
            srv: the ``ModelServer``.
            environ: the request's WSGI environ (nginx's marks are headers in it).
            endpoint: the route's label (``app/server/endpoints.py``) or "unmatched".
            status: the status answered.
        """
        shadow = bool(environ.get("HTTP_X_BLUEGREEN_SHADOW"))
        if endpoint in PREDICTION_ENDPOINTS and (shadow or environ.get("HTTP_X_BLUEGREEN_RECORD")):
            srv.records.append({"id": self.request_id, "t": round(time.time(), 3), "status": status,
                                "ms": round((time.perf_counter() - self.started) * 1000, 3),
                                "predictions": self.predictions, "version": srv.version, "shadow": shadow})
        metrics = srv.metrics
        if shadow:
            # A copy nginx mirrored from the front door: its answer is thrown away, and it is
            # nobody's traffic here (a later bake must not judge it): counted apart only.
            metrics.shadow_requests.labels(str(status)).inc()
        else:
            metrics.request_counter(endpoint, environ.get("REQUEST_METHOD", ""), str(status)).inc()
            meant_for = environ.get("HTTP_X_ROUTE_COLOR")
            if meant_for and meant_for != srv.color:
                metrics.failovers.inc()
            metrics.latency_for(endpoint, status).observe(time.perf_counter() - self.started)
        return [("X-Model-Version", srv.version), ("X-Color", srv.color), ("X-Request-ID", self.request_id)]
