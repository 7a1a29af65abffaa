"""gunicorn server hooks (wired in ``app/server/gunicorn_conf.py``)."""

import gc
import os
import signal


def _model_server(arbiter_or_worker):
    return arbiter_or_worker.app.wsgi().extensions["model_server"]


def when_ready(server):
    # Runs in the master after the preload, before the first fork: release what must not
    # cross a fork, then keep what was loaded in shared pages by leaving it out of the GC.
    _model_server(server).predictor.close()
    gc.freeze()


# The signals that stop a worker (gunicorn: TERM graceful, INT and QUIT quick).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def post_fork(server, worker):
    # Until the worker installs its own handlers (in init_process, after this hook) it has
    # the master's, inherited through the fork, which queue the signal for the master: a
    # TERM sent while a worker boots (a stop right after a start) was lost, and that worker
    # served on until gunicorn killed it at graceful_timeout. Such signals are noted here
    # and sent again once the worker's own handlers are in place (post_worker_init).
    worker.stop_signals_while_booting = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, frame: worker.stop_signals_while_booting.append(received))
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
    for signum in getattr(worker, "stop_signals_while_booting", ()):
        os.kill(os.getpid(), signum)


def worker_exit(server, worker):
    # onnxruntime's process-wide state, created in the master before the fork, hangs or
    # aborts in a worker's interpreter teardown; the worker has already finished its
    # requests and closed its files here, so it leaves without that teardown. A worker
    # that never booted leaves with gunicorn's boot-error code, so that the master halts
    # with "Worker failed to boot" instead of forking it again and again.
    os._exit(0 if worker.booted else server.WORKER_BOOT_ERROR)


def child_exit(server, worker):
    from app.server.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)
