"""gunicorn's gthread worker, answering gunicorn's own refusals in the project's JSON shape.

gunicorn refuses some requests before the app sees them (a malformed request line, a
control character in a header, too many headers, a bad chunk size) and writes an HTML
page for them. This worker writes ``{"error": ..., "status": N}`` instead, with the same
status and gunicorn's own reason, so a color reached directly answers JSON too. It is
wired in ``app/server/gunicorn_conf.py`` (``worker_class``).

What still gets no JSON: a connection that closes or times out before a whole request
line arrives gets no answer at all (there is no request to answer).
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error`` with a JSON body (ASCII: the client's bytes are escaped)."""
    message = f"{reason.lower()}: {mesg}" if mesg else reason.lower()
    body = json.dumps({"error": message, "status": status_int}).encode("ascii")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    util.write_nonblock(sock, head + body)


class JsonErrorThreadWorker(ThreadWorker):
    """A gthread worker whose error pages are JSON."""

    def init_process(self):
        # gunicorn's worker calls util.write_error for every page it writes itself, and
        # offers no hook for it: this process's copy is replaced before any request.
        util.write_error = write_json_error
        super().init_process()
