"""Prediction log benchmark: what keeping a sample of the served rows costs a color's throughput.

Two measurements, side by side:
  * CPU time: what ``PredictionLog.record`` costs a request (one row, a batch of 100) at
    each ``PREDLOG_SAMPLE``, in process, writing to real files; and what a server spends
    per request (its processes' user + system time over the requests wrk sent); so the
    log's share of a request's CPU, which is what it takes off throughput when the CPU is
    the limit. Both are CPU time, so other load on the machine does not skew the ratio;
  * over HTTP: three gunicorn servers of the same color and version (v1.0.0, the
    RandomForest, on its ONNX path), identical but for ``PREDLOG_SAMPLE``: 0 (no log), the
    default 0.1, and 1 (every row). wrk posts to each directly (no nginx, where the log's
    share of a request is largest), single rows and batches of 100, in interleaved rounds
    so that a noisy moment hits every setting alike; each figure is the median over the
    rounds. On a shared 2-core machine this is the noisier of the two.

Usage: .venv/bin/python utils/predlog_bench.py [--seconds 5] [--rounds 5] [--connections 16]
(wrk from the OS packages: `make bench` installs it.)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLES = ("0", "0.1", "1")
SINGLE = '{"x": [5.1, 3.5, 1.4, 0.2]}'
BATCH = '{"instances": [' + ", ".join(["[5.1, 3.5, 1.4, 0.2]", "[6.7, 3.0, 5.2, 2.3]"] * 50) + "]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(sample: str, directory: Path, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    metrics = directory / f"metrics-{sample}"
    env = {**os.environ, "MODEL_VERSION": "v1.0.0", "COLOR": "blue", "MODELS_DIR": str(ROOT / "models"),
           "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads),
           "PROMETHEUS_MULTIPROC_DIR": str(metrics), "PREDLOG_SAMPLE": sample}
    process = subprocess.Popen([str(BIN / "gunicorn"), "-c", "app/server/gunicorn_conf.py", "app.wsgi:app"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ready", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"gunicorn with PREDLOG_SAMPLE={sample} did not start")


def wrk(url: str, body: str, seconds: int, connections: int, directory: Path) -> float:
    script = directory / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = \'{body}\'\nwrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script),
                          url + "/predict"], capture_output=True, text=True, timeout=seconds + 30).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def per_call_us(fn, calls: int = 20000) -> float:
    """CPU microseconds per call (this process's CPU time: other load on the machine does not count)."""
    fn()
    began = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - began) / calls * 1e6


def record_costs(directory: Path) -> dict[tuple[str, str], float]:
    """Microseconds ``record`` takes in one request, per (kind, sample)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from app.server.predlog import PredictionLog

    single, batch = np.array([[5.1, 3.5, 1.4, 0.2]]), np.tile([[5.1, 3.5, 1.4, 0.2]], (100, 1))
    costs = {}
    for sample in SAMPLES:
        log = PredictionLog(str(directory / f"inproc-{sample}"), sample=float(sample))
        costs[("single row", sample)] = per_call_us(lambda log=log: log.record(single, ["setosa"]))
        costs[("batch of 100", sample)] = per_call_us(lambda log=log: log.record(batch, ["setosa"] * 100), 2000)
    return costs


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and its live children (gunicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def logged_rows(url: str) -> int:
    return len(requests.get(url + "/prediction-log", timeout=30).json()["rows"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: `make bench` installs it (apt-get install wrk)", file=sys.stderr)
        return 1
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="predlog-bench-") as tmp:
        directory = Path(tmp)
        servers = {sample: start(sample, directory, args.workers, args.threads) for sample in SAMPLES}
        cpu_per_request: dict[str, list[float]] = {}
        try:
            for _ in range(args.rounds):
                for kind, body in (("single row", SINGLE), ("batch of 100", BATCH)):
                    for sample, (process, url) in servers.items():
                        before = cpu_seconds(process.pid)
                        rps = wrk(url, body, args.seconds, args.connections, directory)
                        results.setdefault((kind, sample), []).append(rps)
                        if sample == "0":
                            cpu_per_request.setdefault(kind, []).append(
                                (cpu_seconds(process.pid) - before) / (rps * args.seconds) * 1e6)
            kept = {sample: logged_rows(url) for sample, (_, url) in servers.items()}
            costs = record_costs(directory)
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; gunicorn {args.workers} "
          f"workers x {args.threads} threads; wrk 1 thread, {args.connections} connections, {args.seconds} s a run, "
          f"median of {args.rounds} interleaved rounds; direct to gunicorn (no nginx)\n")
    print("| POST /predict | PREDLOG_SAMPLE | record() per request, µs | server CPU per request, µs | "
          "the log's share of it | wrk requests/s | rows/s | wrk against no log |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, rows in (("single row", 1), ("batch of 100", 100)):
        base = statistics.median(results[(kind, "0")])
        cpu = statistics.median(cpu_per_request[kind])
        for sample in SAMPLES:
            rps = statistics.median(results[(kind, sample)])
            added = costs[(kind, sample)] - costs[(kind, "0")]
            change = "-" if sample == "0" else f"{(rps / base - 1) * 100:+.1f}%"
            share = "-" if sample == "0" else f"{added / cpu * 100:.2f}%"
            print(f"| {kind} | {sample}{' (default)' if sample == '0.1' else ''} | {costs[(kind, sample)]:.2f} | "
                  f"{cpu:.0f} | {share} | {rps:.0f} | {rps * rows:.0f} | {change} |")
    print("\nrows in each log at the end (bounded by its files): "
          + ", ".join(f"sample {s}: {n}" for s, n in kept.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
