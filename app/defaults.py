"""Serving defaults shared by the server's gunicorn config and the controller, defined once.

The controller passes its ``[gunicorn]`` settings to the servers it starts; a server
started by anything else (``make serve``, a container) falls back to these.
"""

GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4
# Seconds gunicorn keeps an idle connection open. nginx's upstream keep-alive must close
# its idle connections sooner (the controller's config refuses otherwise), or nginx may
# reuse a connection gunicorn has already closed: a 502 on a POST.
GUNICORN_KEEPALIVE = 10
