"""gunicorn settings for one color: ``gunicorn -c app/server/gunicorn_conf.py app.wsgi:app``.

gthread workers (answering gunicorn's own errors in JSON), so nginx can keep upstream
connections alive; the model is loaded once in the master (``preload_app``) and shared by
the forked workers. Environment:
``PORT`` (default 8080) or ``BIND``, ``WEB_CONCURRENCY`` (workers), ``GUNICORN_THREADS``,
``GUNICORN_KEEPALIVE`` (defaults: ``app/defaults.py``), ``ACCESS_LOG`` (off by default:
nginx logs every request), ``PROMETHEUS_MULTIPROC_DIR`` (a private temporary directory
by default).
"""

import os
import shutil
import tempfile

from app import defaults

bind = os.environ.get("BIND") or f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or defaults.GUNICORN_WORKERS)
threads = int(os.environ.get("GUNICORN_THREADS") or defaults.GUNICORN_THREADS)
# gthread, with gunicorn's own error pages in the JSON shape (app/server/gunicorn_worker.py).
worker_class = "app.server.gunicorn_worker.JsonErrorThreadWorker"
preload_app = True
# nginx closes idle upstream connections sooner (the controller checks it); gunicorn must
# keep them open longer, or nginx may reuse one gunicorn already closed (a 502 on a POST).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or defaults.GUNICORN_KEEPALIVE)
# Above nginx's own limits (large_client_header_buffers 4 8k in nginx/nginx.conf.j2), so
# that nginx, not gunicorn, refuses an oversized request line or header that came through
# the front door; a request sent to the color directly is refused here, in JSON.
limit_request_line = 8190          # gunicorn's maximum; nginx refuses a longer line (414)
limit_request_field_size = 16384   # nginx refuses a header line over 8k (400)
limit_request_fields = 1000        # nginx bounds the whole header to 32k, but not the count
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = os.environ.get("ERROR_LOG", "-")
capture_output = errorlog != "-"
# gunicorn's control socket defaults to one path per user: two colors would share it.
control_socket_disable = True
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Prometheus multiprocess mode must be chosen before prometheus_client is imported, and
# the directory wiped once per start (not again when a HUP re-reads this file).
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"bluegreen-metrics-{os.getpid()}")
)
if os.environ.get("BLUEGREEN_METRICS_WIPED_BY") != str(os.getpid()):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)
    os.environ["BLUEGREEN_METRICS_WIPED_BY"] = str(os.getpid())

# The hooks live in a module of their own, imported after the environment is set.
from app.server.gunicorn_hooks import (  # noqa: E402, F401
    child_exit,
    post_fork,
    post_worker_init,
    when_ready,
    worker_exit,
)
