"""gunicorn's gthread worker: gunicorn's own refusals in the project's JSON shape, and each
answer's head and body written together.

gunicorn refuses some requests before the app sees them (a malformed request line, a
control character in a header, too many headers, a bad chunk size) and writes an HTML
page for them. This worker writes ``{"error": ..., "status": N}`` instead, with the same
status and gunicorn's own reason, so a color reached directly answers JSON too. It is
wired in ``app/server/gunicorn_conf.py`` (``worker_class``).

What still gets no JSON: a connection that closes or times out before a whole request
line arrives gets no answer at all (there is no request to answer).

gunicorn writes a response's status line and headers, then its body, in two writes. A
color frozen (SIGSTOP) or killed between the two leaves nginx with a response already
begun that it can neither finish nor retry on another server, and the client gets a
truncated answer. ``OneWriteResponse`` holds the head back until the first body bytes
(or the end of the response) and sends both in one write: nginx then sees either nothing,
and retries elsewhere after its read timeout, or a whole answer (docs/adr/0008).
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.gthread import ThreadWorker


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error`` with a JSON body (ASCII: the client's bytes are escaped)."""
    message = f"{reason.lower()}: {mesg}" if mesg else reason.lower()
    body = json.dumps({"error": message, "status": status_int}).encode("ascii")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    util.write_nonblock(sock, head + body)


class OneWriteResponse(wsgi.Response):
    """A response whose head goes out with its first body bytes, in one write."""

    head = b""

    def send_headers(self):
        if self.headers_sent:
            return
        tosend = self.default_headers()
        tosend.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self.head = ("".join(tosend) + "\r\n").encode("latin-1")
        self.headers_sent = True

    def _flush_head(self, data: bytes = b"") -> None:
        head, self.head = self.head, b""
        if head or data:
            self.sock.sendall(head + data)

    def _emit_body(self, data):
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        self._flush_head(data)

    def sendfile(self, respiter):
        return False  # files go through write(): the head must not wait behind a sendfile

    def close(self):
        if not self.headers_sent:
            self.send_headers()
        self._flush_head()
        super().close()


class JsonErrorThreadWorker(ThreadWorker):
    """A gthread worker whose error pages are JSON and whose answers are written whole."""

    def init_process(self):
        # gunicorn's worker calls util.write_error for every page it writes itself, and
        # builds each response from wsgi.Response, and offers no hook for either: this
        # process's copies are replaced before any request.
        util.write_error = write_json_error
        wsgi.Response = OneWriteResponse
        super().init_process()
