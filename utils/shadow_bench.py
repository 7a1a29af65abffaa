"""Shadow benchmark: the front door's p50/p99 without a shadow, with one, and with a slow one.

One local stack on loopback (nginx, blue active with v1.0.0); the same closed-loop load in
every row: ``--clients`` keep-alive clients posting single-row predictions for
``--seconds``. Rows:
  * no shadow (the mirror subrequest of every /predict ends in nginx at once);
  * a shadow of v1.1.0 on green, ``--sample`` percent mirrored;
  * the same shadow made slow: green's gunicorn processes are stopped (SIGSTOP) for
    ``--slow-ms`` of every 100 ms, so each mirrored copy waits up to that long;
  * the same shadow frozen: green stopped for the whole row (no copy is ever answered);
  * the same shadow dead: green's gunicorn killed (SIGKILL) before the row.
Each row prints requests/s, p50 and p99 as the clients saw them, failed requests, how
many of the row's requests the shadow report paired (or why it could not report), and
how much nginx's error log grew during the row. Every figure is from this run.

Usage: .venv/bin/python utils/shadow_bench.py [--seconds 10] [--clients 8] [--sample 100]
                                               [--slow-ms 80]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.local_stack import LocalStack  # noqa: E402

ROW = {"x": [5.9, 3.0, 5.1, 1.8]}


def load(url: str, clients: int, seconds: float) -> dict:
    """Closed-loop keep-alive clients for ``seconds``: requests/s, p50/p99 in ms, failures."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        mine, failed = [], 0
        with requests.Session() as session:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    ok = session.post(url + "/predict", json=ROW, timeout=10).status_code == 200
                except requests.RequestException:
                    ok = False
                mine.append((time.perf_counter() - began) * 1000)
                failed += not ok
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {"requests": len(latencies), "per_second": len(latencies) / seconds,
            "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
            "failed": failures[0]}


class DutyCycle:
    """Stops ``pids`` for ``stopped_ms`` of every 100 ms (all the time with 100) until ``stop``."""

    def __init__(self, pids: list[int], stopped_ms: float):
        self.pids, self.stopped = pids, stopped_ms / 1000
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _signal(self, sig) -> None:
        for pid in self.pids:
            os.kill(pid, sig)

    def _run(self) -> None:
        while not self.done.is_set():
            self._signal(signal.SIGSTOP)
            time.sleep(self.stopped)
            if self.stopped < 0.1:
                self._signal(signal.SIGCONT)
                time.sleep(0.1 - self.stopped)
        self._signal(signal.SIGCONT)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self._signal(signal.SIGCONT)


def paired(stack: LocalStack) -> int | str:
    """The pairs the report counts, or why it gave none."""
    report = stack.cli("shadow", "report", "--json", check=False, timeout=120)
    if report.returncode:
        return f"no report: {report.stderr.strip().removeprefix('bluegreen: ')}"
    return json.loads(report.stdout)["paired"]


def error_log(stack: LocalStack) -> tuple[int, int]:
    """nginx's error log: (bytes, lines)."""
    data = (stack.run_dir / "nginx" / "error.log").read_bytes()
    return len(data), data.count(b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--slow-ms", type=float, default=80.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as tmp:
        stack = LocalStack(Path(tmp))
        try:
            stack.cli("up")
            load(stack.front, args.clients, 2.0)  # warm-up
            logged = error_log(stack)
            rows.append(("no shadow", load(stack.front, args.clients, args.seconds), None,
                         diff(error_log(stack), logged)))
            stack.cli("shadow", "start", "v1.1.0", "--sample", str(args.sample))
            green = stack.gunicorn_pids("green")
            for name, stopped in ((f"shadow, {args.sample}% mirrored", 0.0),
                                  (f"slow shadow (stopped {args.slow_ms:g} of every 100 ms)", args.slow_ms),
                                  ("frozen shadow (stopped the whole row)", 100.0),
                                  ("dead shadow (killed before the row)", None)):
                before, logged = paired(stack), error_log(stack)
                if stopped is None:
                    for pid in green:
                        os.kill(pid, signal.SIGKILL)
                    figures = load(stack.front, args.clients, args.seconds)
                elif stopped:
                    with DutyCycle(green, stopped):
                        figures = load(stack.front, args.clients, args.seconds)
                else:
                    figures = load(stack.front, args.clients, args.seconds)
                time.sleep(1.5)  # copies still in flight finish (or time out) before counting
                grew, after = diff(error_log(stack), logged), paired(stack)
                rows.append((name, figures, after - before if isinstance(after, int) else after, grew))
            stack.cli("shadow", "stop")
        finally:
            stack.down()
    print(f"{args.clients} keep-alive clients, {args.seconds:g} s a row, POST /predict through the front door")
    print("| front door | requests/s | p50 ms | p99 ms | failed | paired by the report | nginx error log grew |")
    print("|---|---|---|---|---|---|---|")
    for name, f, pairs, (grew, lines) in rows:
        share = "-" if pairs is None else pairs if isinstance(pairs, str) else f"{pairs} of {f['requests']}"
        print(f"| {name} | {f['per_second']:.0f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {f['failed']} | {share} | "
              f"{grew} bytes, {lines} lines |")
    return 0


def diff(now: tuple[int, int], before: tuple[int, int]) -> tuple[int, int]:
    return now[0] - before[0], now[1] - before[1]


if __name__ == "__main__":
    sys.exit(main())
