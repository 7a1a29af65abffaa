"""Benchmark: one run, one machine, one table (docs/PERFORMANCE.md records a run).

Measures, side by side in one run:
  * in-process predict time per row, scikit-learn vs the server's fast path (ONNX), for
    both shipped models, single row and a batch of 1000;
  * throughput and p50/p99 of POST /predict through the front door for each color, beside
    the ceiling of the same nginx + gunicorn + Flask stack serving a trivial endpoint
    (GET /livez), and direct to gunicorn; p99 at about half of peak throughput;
  * GET /health latency; switch time (median of N); rollback time after the first failed
    bake poll; resident memory per color;
  * beside them, in the same rounds: an empty Flask endpoint on gunicorn gthread behind a
    plain nginx with upstream keep-alive, a stand-in for the original single-file app
    (Flask's development server, scikit-learn per request; utils/bench_apps.py), the Open
    Inference Protocol v2 infer through the front door, 1000-row batches (rows/s), and,
    with ``--mlserver``, MLServer serving the same RandomForest artifact (single rows and
    1000-row batches over the same protocol).
  * reloads under keep-alive load: R real `bluegreen reload`s (a setting toggled each time)
    while C keep-alive clients post /predict, and the requests that failed; then the same
    with clients that retry a request once when a reused connection was closed under it.
Load comes from wrk (Debian package `wrk`; `make bench` installs it), one thread, in its own
process. Every figure is from this run; ratios compare figures from this run only.

Usage: .venv/bin/python utils/benchmark.py [--seconds 8] [--rounds 3] [--connections 16]
                                            [--workers 2] [--threads 4] [--mlserver PATH]
                                            [--reloads 8] [--reload-clients 4] [--only-reloads]

``--mlserver``: the ``mlserver`` executable of a separate environment (MLServer 1.7.1 and
mlserver-sklearn with this project's scikit-learn version), never this project's.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.artifacts.loading import load_model  # noqa: E402
from app.control.config import load_config  # noqa: E402
from app.control.nginx_render import render_config, render_context  # noqa: E402
from app.server.predictors import SklearnPredictor, build_predictor  # noqa: E402
from app.training.data import holdout  # noqa: E402
from utils.local_stack import ClientThreads, LocalStack, free_ports  # noqa: E402

ROW = [5.1, 3.5, 1.4, 0.2]


def per_call_us(fn, min_seconds: float = 0.5, min_calls: int = 20) -> float:
    fn()
    calls, began = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - began < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - began) / calls * 1e6


def bench_in_process() -> list[tuple]:
    rows = []
    batch = np.tile(holdout()[0], (23, 1))[:1000]
    single = np.array([ROW])
    for version in ("v1.0.0", "v1.1.0"):
        loaded = load_model(ROOT / "models", version)
        fast, _ = build_predictor(loaded.card, ROOT / "models")
        slow = SklearnPredictor(loaded.model)
        for label, predictor in (("scikit-learn", slow), (f"fast path ({fast.name})", fast)):
            one = per_call_us(lambda p=predictor: p.predict_proba(single))
            thousand = per_call_us(lambda p=predictor: p.predict_proba(batch), min_calls=5) / 1000
            rows.append((version, loaded.card["algorithm"], label, one, thousand))
    return rows


def bench_stack(directory: Path, workers: int, threads: int) -> LocalStack:
    return LocalStack(directory, extra_toml=(
        f"[gunicorn]\nworkers = {workers}\nthreads = {threads}\n"
        "[bake]\nperiod = 20.0\ninterval = 0.5\nfailure_limit = 1\n"
    ))


WRK_POST = """wrk.method = "POST"
wrk.body = '{"x": [5.1, 3.5, 1.4, 0.2]}'
wrk.headers["Content-Type"] = "application/json"
"""
BATCH = (np.tile(holdout()[0], (23, 1))[:1000]).round(2).tolist()


def oip_body(rows: list) -> str:
    return json.dumps({"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP64",
                                   "data": [v for row in rows for v in row]}]})


BODIES = {
    True: WRK_POST,
    "oip": f"wrk.method = 'POST'\nwrk.body = '{oip_body([ROW])}'\nwrk.headers['Content-Type'] = 'application/json'\n",
    "oip-batch": f"wrk.method = 'POST'\nwrk.body = '{oip_body(BATCH)}'\n"
                 "wrk.headers['Content-Type'] = 'application/json'\n",
    "batch": f"wrk.method = 'POST'\nwrk.body = '{json.dumps({'instances': BATCH})}'\n"
             "wrk.headers['Content-Type'] = 'application/json'\n",
}


def wrk(url: str, seconds: int, connections: int, post, script_dir: Path) -> dict:
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    if post:
        script = script_dir / f"post-{post}.lua"
        script.write_text(BODIES[post])
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout

    def latency(p):
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency(50), "p99": latency(99),
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "connections": connections,
    }


def median_run(runs: list[dict]) -> dict:
    """Median of each figure over rounds; errors are summed, never hidden."""
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50": statistics.median(r["p50"] for r in runs),
        "p99": statistics.median(r["p99"] for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
        "socket_errors": "; ".join(r["socket_errors"] for r in runs if r["socket_errors"]),
        "connections": runs[0]["connections"],
    }


def color_memory(pids: list[int]) -> tuple[float, float]:
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def trickle(url: str, stop: threading.Event):
    with requests.Session() as session:
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):
                session.post(url + "/predict", json={"x": ROW}, timeout=2)
            time.sleep(0.01)


def measure_rollback(stack: LocalStack) -> dict:
    """Deploy to the idle color, kill it during the bake, return the rollback event from the history."""
    stack.cli("up")
    if stack.status()["active"] != "blue":
        stack.cli("switch", "blue")
    stop = threading.Event()
    thread = threading.Thread(target=trickle, args=(stack.front, stop), daemon=True)
    thread.start()
    try:
        deploy = stack.popen("deploy", "v1.1.0")
        state_file = stack.run_dir / "state.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill only once the bake has begun
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(state_file.read_text())
                if state["active"] == "green" and (state["rollout"] or {}).get("phase") == "baking":
                    break
            time.sleep(0.05)
        for pid in stack.gunicorn_pids("green"):
            os.kill(pid, signal.SIGKILL)
        out, err = deploy.communicate(timeout=60)
    finally:
        stop.set()
        thread.join()
    rollback = [e for e in stack.history() if e["action"] == "rollback" and "since_ms" in e]
    if deploy.returncode != 1 or not rollback:
        raise RuntimeError(f"the deploy did not roll back (exit {deploy.returncode}):\n{out}\n{err}")
    stack.cli("up")
    return rollback[-1]


PLAIN_NGINX = """worker_processes auto;
daemon on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/access.log combined buffer=64k flush=1s;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream trivial {{ server 127.0.0.1:{app}; keepalive 32; keepalive_timeout 4s; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://trivial;
        }}
    }}
}}
"""


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f}s")


def front_door_for(directory: Path, port: int) -> tuple[list[str], int]:
    """The front door's own nginx config (nginx/nginx.conf.j2, rendered by the controller's
    renderer) with blue on ``port``: the nginx command that runs it, and its front port."""
    front, preview, green = free_ports(3)
    run_dir = directory / "front-run"
    nginx_dir = run_dir / "nginx"
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / "tmp" / name).mkdir(parents=True, exist_ok=True)
    toml = directory / "front.toml"
    toml.write_text(f'run_dir = "{run_dir}"\n[nginx]\nport = {front}\npreview_port = {preview}\n'
                    f"[colors.blue]\nports = [{port}]\n[colors.green]\nports = [{green}]\n")
    user = (f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"
            if os.geteuid() == 0 else "")
    context = render_context(load_config(str(toml), environ={}), str(nginx_dir), f"{nginx_dir}/active-green", user)
    (nginx_dir / "nginx.conf").write_text(render_config((ROOT / "nginx" / "nginx.conf.j2").read_text(), context))
    return ["nginx", "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf"), "-e",
            str(nginx_dir / "error.log")], front


@contextlib.contextmanager
def baselines(directory: Path, workers: int, threads: int, mlserver: str | None):
    """The trivial Flask endpoint behind a plain nginx, the original app's stand-in and, when
    given, MLServer: started once, stopped at the end (each by its own process)."""
    trivial_port, nginx_port, original_port, ml_http, ml_grpc, ml_metrics = free_ports(6)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    processes = [subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-k", "gthread", "-w", str(workers), "--threads", str(threads),
         "--keep-alive", "10", "-b", f"127.0.0.1:{trivial_port}", "utils.bench_apps:trivial"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    artifact = ROOT / "models" / "iris_model_v1.0.0.joblib"
    processes.append(subprocess.Popen([sys.executable, "utils/bench_apps.py", "original", str(artifact),
                                       str(original_port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    nginx_dir = directory / "plain-nginx"
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / name).mkdir(parents=True, exist_ok=True)
    (nginx_dir / "nginx.conf").write_text(PLAIN_NGINX.format(d=nginx_dir, app=trivial_port, port=nginx_port))
    nginx = ["nginx", "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf"), "-e", str(nginx_dir / "error.log")]
    front_nginx, front_port = front_door_for(directory, trivial_port)
    urls = {"trivial": f"http://127.0.0.1:{nginx_port}/", "original": f"http://127.0.0.1:{original_port}/predict",
            "trivial_front": f"http://127.0.0.1:{front_port}/predict"}
    try:
        subprocess.run(nginx, check=True, timeout=30)
        subprocess.run(front_nginx, check=True, timeout=30)
        if mlserver:
            model_dir = directory / "mlserver" / "iris"
            model_dir.mkdir(parents=True)
            shutil.copy(artifact, model_dir / "model.joblib")
            (model_dir / "model-settings.json").write_text(json.dumps({
                "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1.0.0"}}))
            # parallel_workers 0: MLServer's worker pool did not start on Python 3.11 here.
            (directory / "mlserver" / "settings.json").write_text(json.dumps({
                "http_port": ml_http, "grpc_port": ml_grpc, "metrics_port": ml_metrics, "parallel_workers": 0,
                "host": "127.0.0.1"}))
            processes.append(subprocess.Popen([mlserver, "start", str(directory / "mlserver")], cwd=directory,
                                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls["mlserver"] = f"http://127.0.0.1:{ml_http}/v2/models/iris/infer"
            wait_for(f"http://127.0.0.1:{ml_http}/v2/models/iris/ready", 120)
        wait_for(urls["trivial"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.post(urls["original"], json={"x": ROW}, timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield urls
    finally:
        subprocess.run([*nginx, "-s", "quit"], timeout=30, check=False)
        subprocess.run([*front_nginx, "-s", "quit"], timeout=30, check=False)
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


EMPTY_FLASK = "empty Flask endpoint, gunicorn gthread, behind a plain nginx (keep-alive)"
EMPTY_FLASK_FRONT = "empty Flask endpoint, gunicorn gthread, behind the front door's own nginx config, POST /predict"
ORIGINAL = "original single-file app (stand-in: Flask dev server, scikit-learn RandomForest), POST /predict"
OIP_FRONT = "OIP v2 infer, 1 row, front door, blue"
BATCH_FRONT = "POST /predict, 1000-row batch, front door, blue"
OIP_BATCH_FRONT = "OIP v2 infer, 1000-row batch, front door, blue"
MLSERVER = "MLServer 1.7.1 (mlserver-sklearn, same artifact), OIP v2 infer, 1 row"
MLSERVER_BATCH = "MLServer 1.7.1, OIP v2 infer, 1000-row batch"
def innermost(exc: BaseException) -> str:
    """The name of the error at the bottom of requests' and urllib3's wrapping."""
    while exc.args and isinstance(exc.args[-1], BaseException):
        exc = exc.args[-1]
    return type(exc).__name__


class ReloadClients(ClientThreads):
    """Keep-alive clients posting /predict; with ``retry``, a request whose reused connection was
    closed before any answer is sent once more on a fresh one (what nginx does upstream)."""

    def __init__(self, url: str, count: int, retry: bool = False):
        self.url = url + "/predict"
        self.retry = retry
        self.sent = self.retried = 0
        self.failures: list[str] = []
        super().__init__(count)

    def _client(self) -> None:
        with requests.Session() as session:
            while not self.stop_event.is_set():
                failure = None
                for attempt in range(2 if self.retry else 1):
                    try:
                        response = session.post(self.url, json={"x": ROW}, timeout=10)
                        failure = None if response.status_code == 200 else f"HTTP {response.status_code}"
                        break
                    except requests.ConnectionError as exc:  # reset, broken pipe, closed before an answer
                        failure = innermost(exc)
                        with self.lock:
                            self.retried += attempt == 0 and self.retry
                with self.lock:
                    self.sent += 1
                    if failure:
                        self.failures.append(failure)


def measure_reloads(stack: LocalStack, reloads: int, clients: int, retry: bool) -> dict:
    """``reloads`` real reloads (a timeout toggled in the config each time), about one a second,
    under ``clients`` keep-alive clients."""
    original = stack.config.read_text()
    try:
        with ReloadClients(stack.front, clients, retry) as load:
            time.sleep(1.0)
            for i in range(reloads):
                stack.config.write_text(original.replace("[nginx]\n", f'[nginx]\nsend_timeout = "{10 + i % 2 + 1}s"\n'))
                stack.cli("reload")
                time.sleep(1.0)
    finally:
        stack.config.write_text(original)
        stack.cli("reload", check=False)
    kinds: dict[str, int] = {}
    for failure in load.failures:
        kinds[failure] = kinds.get(failure, 0) + 1
    return {"reloads": reloads, "clients": clients, "retry": retry, "sent": load.sent,
            "failed": len(load.failures), "kinds": kinds, "retried": load.retried}


def print_reloads(runs: list[dict]) -> None:
    print("## Reloads under keep-alive load\n")
    print("| clients | reloads | a reset connection | requests | failed | what failed |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        what = ", ".join(f"{k} {n}" for k, n in sorted(r["kinds"].items())) or "-"
        retry = f"retried once ({r['retried']} retries)" if r["retry"] else "not retried"
        print(f"| {r['clients']} | {r['reloads']} | {retry} | {r['sent']} | {r['failed']} | {what} |")
    print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="One-run benchmark; prints a markdown table.")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the HTTP runs")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--mlserver", help="the mlserver executable of a separate environment (optional)")
    parser.add_argument("--reloads", type=int, default=8, help="reloads under keep-alive load (0: none)")
    parser.add_argument("--reload-clients", type=int, default=4)
    parser.add_argument("--only-reloads", action="store_true", help="measure the reloads only (no wrk needed)")
    args = parser.parse_args(argv)
    if args.only_reloads:
        with tempfile.TemporaryDirectory(prefix="bluegreen-bench-") as tmp, \
                bench_stack(Path(tmp), args.workers, args.threads) as stack:
            print(f"# bluegreen reloads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} "
                  f"cores\n")
            print_reloads([measure_reloads(stack, args.reloads, args.reload_clients, retry)
                           for retry in (False, True)])
        return 0
    if not shutil.which("wrk"):
        print("wrk is not installed: run `make bench` (it installs the Debian package) or apt-get install wrk",
              file=sys.stderr)
        return 1
    print(f"# bluegreen benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; load generator: wrk, 1 thread, "
          f"{args.connections} keep-alive connections, {args.seconds}s per run, on the same machine; "
          f"gunicorn {args.workers} workers x {args.threads} threads per color\n")

    in_process = [] if args.skip_in_process else bench_in_process()
    if in_process:
        print("## In-process predict, per row (µs)\n")
        print("| version | model | predictor | 1 row | batch of 1000, per row |")
        print("|---|---|---|---|---|")
        for version, algorithm, label, one, thousand in in_process:
            print(f"| {version} | {algorithm} | {label} | {one:.1f} | {thousand:.2f} |")
        print()

    with tempfile.TemporaryDirectory(prefix="bluegreen-bench-") as tmp:
        stack = bench_stack(Path(tmp), args.workers, args.threads)
        stack.cli("up")
        others = baselines(Path(tmp), args.workers, args.threads, args.mlserver)
        urls = others.__enter__()
        try:
            front = stack.front
            direct = f"http://127.0.0.1:{stack.blue_port}"
            scenarios = [
                # (name, active color, url, POST?, connections)
                ("trivial endpoint (GET /livez), front door", "blue", front + "/livez", False, args.connections),
                ("POST /predict, front door, blue (RandomForest v1.0.0)", "blue", front + "/predict", True,
                 args.connections),
                ("POST /predict, front door, green (LogisticRegression v1.1.0)", "green", front + "/predict",
                 True, args.connections),
                ("trivial endpoint (GET /livez), direct to gunicorn blue", "blue", direct + "/livez", False,
                 args.connections),
                ("POST /predict, direct to gunicorn blue", "blue", direct + "/predict", True, args.connections),
                ("GET /health, front door, blue", "blue", front + "/health", False, args.connections),
            ] + [(f"POST /predict, front door, blue, {c} connection(s)", "blue", front + "/predict", True, c)
                 for c in (1, 2, 4)] + [
                (EMPTY_FLASK, "blue", urls["trivial"], False, args.connections),
                (EMPTY_FLASK_FRONT, "blue", urls["trivial_front"], True, args.connections),
                (ORIGINAL, "blue", urls["original"], True, args.connections),
                (OIP_FRONT, "blue", front + "/v2/models/iris/infer", "oip", args.connections),
                (BATCH_FRONT, "blue", front + "/predict", "batch", args.connections),
                (OIP_BATCH_FRONT, "blue", front + "/v2/models/iris/infer", "oip-batch", args.connections),
            ] + ([(MLSERVER, "blue", urls["mlserver"], "oip", args.connections),
                  (MLSERVER_BATCH, "blue", urls["mlserver"], "oip-batch", args.connections)]
                 if "mlserver" in urls else [])
            results: dict[str, list] = {name: [] for name, *_ in scenarios}
            # Rounds interleave the scenarios, so a noisy moment hits all of them alike;
            # each figure is the median over the rounds.
            for _ in range(args.rounds):
                for name, color, url, post, connections in scenarios:
                    stack.cli("switch", color)
                    results[name].append(wrk(url, args.seconds, connections, post, Path(tmp)))
            runs = [(name, median_run(results[name])) for name, *_ in scenarios]
            by_name = dict(runs)
            ceiling = by_name["trivial endpoint (GET /livez), front door"]
            blue = by_name["POST /predict, front door, blue (RandomForest v1.0.0)"]
            green = by_name["POST /predict, front door, green (LogisticRegression v1.1.0)"]
            half = min((r for name, r in runs if "connection(s)" in name),
                       key=lambda r: abs(r["rps"] / blue["rps"] - 0.5))
            stack.cli("switch", "blue")
            print(f"## HTTP (wrk; median of {args.rounds} interleaved rounds)\n")
            print("| what | connections | req/s | rows/s | p50 ms | p99 ms | non-2xx | socket errors |")
            print("|---|---|---|---|---|---|---|---|")
            for name, r in runs:
                rows = r["rps"] * (1000 if "1000-row" in name else 1)
                print(f"| {name} | {r['connections']} | {r['rps']:.0f} | {rows:.0f} | {r['p50']:.2f} | "
                      f"{r['p99']:.2f} | {r['non2xx']} | {r['socket_errors'] or '-'} |")
            print()

            durations, walls = [], []
            for i in range(args.switches):
                began = time.monotonic()
                stack.cli("switch", "green" if i % 2 == 0 else "blue")
                walls.append((time.monotonic() - began) * 1000)
                durations.append(stack.history()[-1]["duration_ms"])
            if stack.status()["active"] != "blue":
                stack.cli("switch", "blue")
            memory = {color: color_memory(stack.gunicorn_pids(color)) for color in ("blue", "green")}
            rollbacks = [measure_rollback(stack)["since_ms"] for _ in range(3)]
            reload_runs = [measure_reloads(stack, args.reloads, args.reload_clients, retry)
                           for retry in (False, True)] if args.reloads else []
        finally:
            others.__exit__(None, None, None)
            stack.cli("down", check=False)

    print("## Controller and memory\n")
    print("| what | figure |")
    print("|---|---|")
    print(f"| switch, flip to verified through the front door (median of {args.switches}) | "
          f"{statistics.median(durations):.0f} ms |")
    print(f"| switch, whole `bluegreen switch` command (median of {args.switches}) | "
          f"{statistics.median(walls):.0f} ms |")
    print(f"| rollback, first failed bake poll to the front door serving the old color (median of 3) | "
          f"{statistics.median(rollbacks):.0f} ms ({', '.join(f'{r:.0f}' for r in rollbacks)}) |")
    for color, (rss, pss) in memory.items():
        print(f"| memory, {color} (master + workers): RSS sum / PSS sum | {rss:.0f} MB / {pss:.0f} MB |")
    print()
    if reload_runs:
        print_reloads(reload_runs)
    print("## Targets (ratios from this run)\n")
    print("| target | measured | met |")
    print("|---|---|---|")
    ratio = blue["rps"] / ceiling["rps"]
    print(f"| /predict RandomForest through nginx ≥ 0.9× trivial ceiling | {ratio:.2f}× "
          f"({blue['rps']:.0f} / {ceiling['rps']:.0f} req/s) | {'yes' if ratio >= 0.9 else 'no'} |")
    green_ratio = green["rps"] / ceiling["rps"]
    print(f"| (same for LogisticRegression) | {green_ratio:.2f}× | {'yes' if green_ratio >= 0.9 else 'no'} |")
    if in_process:
        fast = [one for _, _, label, one, _ in in_process if label.startswith("fast")]
        print(f"| model compute ≤ 20 µs per row (fast path, 1 row) | {max(fast):.1f} µs worst | "
              f"{'yes' if max(fast) <= 20 else 'no'} |")
    if half:
        print(f"| p99 ≤ 10 ms at about half of peak (nearest run to 0.5×) | "
              f"{half['p99']:.2f} ms at {half['rps']:.0f} req/s "
              f"({half['rps'] / blue['rps']:.2f}× peak, {half['connections']} connections) | "
              f"{'yes' if half['p99'] <= 10 else 'no'} |")
    for name, behind in ((EMPTY_FLASK_FRONT, "the same front door config"), (EMPTY_FLASK, "a plain nginx")):
        empty = by_name[name]
        ratio = blue["rps"] / empty["rps"]
        print(f"| /predict single row through the front door ≥ 1.0× an empty Flask endpoint behind {behind} | "
              f"{ratio:.2f}× ({blue['rps']:.0f} / {empty['rps']:.0f} req/s) | {'yes' if ratio >= 1.0 else 'no'} |")
    original = by_name[ORIGINAL]
    ratio = blue["rps"] / original["rps"]
    print(f"| /predict through the front door ≥ 40× the original single-file app | {ratio:.1f}× "
          f"({blue['rps']:.0f} / {original['rps']:.0f} req/s) | {'yes' if ratio >= 40 else 'no'} |")
    if MLSERVER in by_name:
        oip, ml = by_name[OIP_FRONT], by_name[MLSERVER]
        ratio = oip["rps"] / ml["rps"]
        print(f"| OIP v2 infer through the front door ≥ 25× MLServer on the same artifact | {ratio:.1f}× "
              f"({oip['rps']:.0f} / {ml['rps']:.0f} req/s) | {'yes' if ratio >= 25 else 'no'} |")
        ours, theirs = by_name[OIP_BATCH_FRONT]["rps"] * 1000, by_name[MLSERVER_BATCH]["rps"] * 1000
        print(f"| 1000-row batches, OIP v2 infer: rows/s, front door vs MLServer (reported) | "
              f"{ours:.0f} vs {theirs:.0f} rows/s ({ours / theirs:.1f}×) | - |")
    median_switch = statistics.median(durations)
    print(f"| switch ≤ 1 s | {median_switch:.0f} ms | {'yes' if median_switch <= 1000 else 'no'} |")
    median_rollback = statistics.median(rollbacks)
    print(f"| rollback ≤ 5 s after the first failed poll | {median_rollback:.0f} ms | "
          f"{'yes' if median_rollback <= 5000 else 'no'} |")
    worst_pss = max(pss for _, pss in memory.values())
    worst_rss = max(rss for rss, _ in memory.values())
    print(f"| ≤ 150 MB resident per color | PSS {worst_pss:.0f} MB (RSS sum {worst_rss:.0f} MB) | "
          f"{'yes' if worst_pss <= 150 else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
