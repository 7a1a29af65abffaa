"""Every inference route of every protocol, in one table, and the hot path's matcher.

Flask registers each route of ``ROUTES`` (``app/server/views.py``), so its 404s, 405s and
``Allow`` headers know them; the hot path (``app/server/hotpath.py``) answers the POST
routes itself, found by ``match_hot`` without Flask's URL map. Both run the same ``Route``.
"""

from __future__ import annotations

from werkzeug.routing import BaseConverter

from app.server import endpoints, kserve_v1, mlflow_scoring, native, oip
from app.server.calls import Route


class ModelNameConverter(BaseConverter):
    """``<model:name>``: a path segment without a colon."""

    regex = "[^/:]+"

PREDICT = Route(endpoints.PREDICT, native.predict)
OIP_INFER = Route(endpoints.OIP_INFER, oip.infer)
OIP_VERSION_INFER = Route(endpoints.OIP_VERSION_INFER, oip.infer)
KSERVE_V1_PREDICT = Route(endpoints.KSERVE_V1_PREDICT, kserve_v1.predict)
MLFLOW_INVOCATIONS = Route(endpoints.MLFLOW_INVOCATIONS, mlflow_scoring.invocations, mlflow_scoring.error)

# (method, rule, route): the rule is also the route's metrics label.
ROUTES = [
    ("POST", endpoints.PREDICT, PREDICT),
    ("POST", endpoints.OIP_INFER, OIP_INFER),
    ("POST", endpoints.OIP_VERSION_INFER, OIP_VERSION_INFER),
    ("POST", endpoints.KSERVE_V1_PREDICT, KSERVE_V1_PREDICT),
    ("POST", endpoints.MLFLOW_INVOCATIONS, MLFLOW_INVOCATIONS),
    ("GET", "/v2", Route("/v2", oip.server_metadata, pinned=False)),
    ("GET", "/v2/health/live", Route("/v2/health/live", oip.live, pinned=False)),
    ("GET", "/v2/health/ready", Route("/v2/health/ready", oip.ready, pinned=False)),
    ("GET", "/v2/models/<name>", Route("/v2/models/<name>", oip.model_metadata)),
    ("GET", "/v2/models/<name>/versions/<version>", Route("/v2/models/<name>/versions/<version>",
                                                          oip.model_metadata)),
    ("GET", "/v2/models/<name>/ready", Route("/v2/models/<name>/ready", oip.model_ready)),
    ("GET", "/v2/models/<name>/versions/<version>/ready", Route("/v2/models/<name>/versions/<version>/ready",
                                                                oip.model_ready)),
    # A model name has no colon here: /v1/models/iris:predict is the POST route's alone.
    ("GET", "/v1/models/<model:name>", Route("/v1/models/<model:name>", kserve_v1.metadata)),
    ("GET", "/ping", Route("/ping", mlflow_scoring.ping, mlflow_scoring.error, pinned=False)),
    ("GET", "/version", Route("/version", mlflow_scoring.version, mlflow_scoring.error, pinned=False)),
]


def _segment(text: str) -> str:
    # WSGI gives the path as latin-1 characters of its bytes; Flask decodes it as UTF-8.
    return text.encode("latin-1").decode("utf-8", "replace")


def match_hot(path: str) -> tuple[Route, dict] | None:
    """The POST route ``path`` names, with its parameters; None for anything else (Flask's)."""
    if path == "/predict":
        return PREDICT, {}
    if path == "/invocations":
        return MLFLOW_INVOCATIONS, {}
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[len("/v2/models/"):-len("/infer")].split("/")
        if len(parts) == 1 and parts[0]:
            return OIP_INFER, {"name": _segment(parts[0])}
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            return OIP_VERSION_INFER, {"name": _segment(parts[0]), "version": _segment(parts[2])}
        return None
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        name = path[len("/v1/models/"):-len(":predict")]
        if name and "/" not in name:
            return KSERVE_V1_PREDICT, {"name": _segment(name)}
    return None
