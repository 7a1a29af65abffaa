"""gunicorn settings for one color: ``gunicorn -c app/gunicorn_conf.py app.wsgi:app``.

gthread workers, so nginx can keep upstream connections alive; the model is loaded once
in the master (``preload_app``) and shared by the forked workers. Environment:
``PORT`` (default 8080) or ``BIND``, ``WEB_CONCURRENCY`` (workers, default 2),
``GUNICORN_THREADS`` (default 4), ``ACCESS_LOG`` (off by default: nginx logs every
request), ``PROMETHEUS_MULTIPROC_DIR`` (a private temporary directory by default).
"""

import gc
import os
import shutil
import signal
import tempfile

bind = os.environ.get("BIND") or f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
preload_app = True
# nginx closes idle upstream connections after 4 s (nginx/ templates); gunicorn must keep
# them open longer, or nginx may reuse one gunicorn already closed (a 502 on a POST).
keepalive = 10
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


def _model_server(arbiter_or_worker):
    return arbiter_or_worker.app.wsgi().extensions["model_server"]


def when_ready(server):
    # Runs in the master after the preload, before the first fork: release what must not
    # cross a fork, then keep what was loaded in shared pages by leaving it out of the GC.
    _model_server(server).predictor.close()
    gc.freeze()


def post_fork(server, worker):
    model_server = _model_server(server)
    model_server.predictor.open()
    model_server.warm_up()


def post_worker_init(worker):
    # Readiness answers 503 as soon as the worker is told to stop, while it drains.
    model_server = worker.wsgi.extensions["model_server"]
    stop = signal.getsignal(signal.SIGTERM)

    def drain_then_stop(signum, frame):
        model_server.draining.set()
        stop(signum, frame)

    signal.signal(signal.SIGTERM, drain_then_stop)


def worker_exit(server, worker):
    # onnxruntime's process-wide state, created in the master before the fork, hangs or
    # aborts in a worker's interpreter teardown; the worker has already finished its
    # requests and closed its files here, so it leaves without that teardown.
    os._exit(0)


def child_exit(server, worker):
    from app.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)
