"""Faults under load, on a private local stack (loopback only): the figures of rollout core part 2.

Measures, in one run, under N keep-alive clients posting predictions to the front door:
  * operator preemption: K deploys of v1.1.0 to green, each stopped during its bake by
    `bluegreen abort` or `bluegreen rollback` (alternating); for each, how long the command
    took until the front door was verified on the stable version (blue, v1.0.0), the switch
    time the history recorded, and the requests that failed while it happened;
  * a frozen active color: every process of blue stopped (SIGSTOP) for S seconds, then
    resumed; the slowest request, how many waited longer than 3 s, how many failed, and how
    many the other color answered meanwhile.
Prints one table (docs/PERFORMANCE.md, "Faults under load", records a run).

Usage: .venv/bin/python utils/fault_bench.py [--clients 8] [--preemptions 10] [--freeze 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.local_stack import ClientThreads, LocalStack  # noqa: E402

BAKE = """
[bake]
period = 120.0
interval = 0.5
"""


class Clients(ClientThreads):
    """Keep-alive clients posting /predict until stopped; every answer timed, every failure kept."""

    join_timeout = 35.0

    def __init__(self, url: str, count: int):
        self.url = url + "/predict"
        self.answers: list[tuple[float, float, str]] = []  # (finished at, seconds, version or failure)
        self.failures: list[tuple[float, str]] = []
        super().__init__(count)

    def _client(self) -> None:
        with requests.Session() as session:
            while not self.stop_event.is_set():
                began = time.monotonic()
                try:
                    response = session.post(self.url, json={"x": [5.9, 3.0, 5.1, 1.8]}, timeout=30)
                    body = response.json()
                    outcome = body["version"] if response.status_code == 200 else f"HTTP {response.status_code}"
                except Exception as exc:  # every kind of failure is counted, none raised
                    outcome = f"{type(exc).__name__}: {exc}"
                finished = time.monotonic()
                with self.lock:
                    self.answers.append((finished, finished - began, outcome))
                    if not outcome.startswith("v"):
                        self.failures.append((finished, outcome))

    def between(self, start: float, end: float) -> list[tuple[float, float, str]]:
        with self.lock:
            return [a for a in self.answers if start <= a[0] <= end]


def rollout_phase(stack: LocalStack) -> str | None:
    try:
        rollout = json.loads((stack.run_dir / "state.json").read_text())["rollout"]
    except (OSError, ValueError, KeyError):
        return None
    return rollout and rollout["phase"]


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"fault_bench: timed out waiting for {what}")


def front_color(stack: LocalStack) -> str:
    return requests.get(stack.front + "/ready", timeout=5).headers.get("X-Color", "")


def preemptions(stack: LocalStack, clients: Clients, count: int) -> list[dict]:
    rows = []
    for n in range(count):
        command = "abort" if n % 2 == 0 else "rollback"
        deploy = stack.popen("deploy", "v1.1.0", "--force")
        wait_for(lambda: rollout_phase(stack) == "baking", 90, "the bake to begin")
        wait_for(lambda: front_color(stack) == "green", 10, "the front door on green")
        time.sleep(1.0)  # some traffic on the new version first
        began = time.monotonic()
        result = stack.cli(command, check=False)
        took = time.monotonic() - began
        on_stable = front_color(stack) == "blue"
        if os.environ.get("FAULT_BENCH_VERBOSE"):
            print(result.stdout + result.stderr, flush=True)
        deploy.communicate(timeout=60)
        time.sleep(0.5)
        window = clients.between(began - 1.0, time.monotonic())
        new_after = [a[0] for a in window if a[0] >= began and a[2] == "v1.1.0"]
        restored = (max(new_after) - began) if new_after else 0.0  # the last answer from the new version
        switch = [e for e in stack.history() if e["action"] == "rollback" and e["outcome"] == "succeeded"][-1]
        rows.append({"command": command, "exit": result.returncode, "seconds": took, "on_stable": on_stable,
                     "restored": restored, "switch_ms": switch.get("duration_ms"),
                     "since_ms": switch.get("since_ms"), "deploy_exit": deploy.returncode,
                     "requests": len(window), "failed": sum(1 for a in window if not a[2].startswith("v"))})
        print(f"  {n + 1:2d}. {command:8s} command {took:5.2f} s, last answer from v1.1.0 after "
              f"{restored:.2f} s, switch {switch.get('duration_ms')} ms, "
              f"{rows[-1]['requests']} requests, {rows[-1]['failed']} failed", flush=True)
    return rows


def freeze(stack: LocalStack, clients: Clients, seconds: float) -> dict:
    pids = stack.gunicorn_pids("blue")
    time.sleep(1.0)
    began = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    time.sleep(2.0)
    window = clients.between(began, time.monotonic())
    during = [a for a in window if a[0] <= resumed + 3.0]
    times = sorted(a[1] for a in during)
    return {"requests": len(during), "failed": sum(1 for a in during if not a[2].startswith("v")),
            "slowest": times[-1] if times else 0.0, "over_3s": sum(1 for t in times if t > 3.0),
            "p50_ms": statistics.median(times) * 1000 if times else 0.0,
            "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] * 1000 if times else 0.0,
            "other_color": sum(1 for a in during if a[2] == "v1.1.0"),
            "front_after": front_color(stack)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--preemptions", type=int, default=10)
    parser.add_argument("--freeze", type=float, default=10.0)
    args = parser.parse_args()
    with (tempfile.TemporaryDirectory(prefix="bluegreen-faults-") as directory,
          LocalStack(Path(directory), extra_toml=BAKE) as stack,
          Clients(stack.front, args.clients) as clients):
        print(f"{args.preemptions} deploys preempted during the bake, {args.clients} keep-alive clients:")
        rows = preemptions(stack, clients, args.preemptions)
        print(f"blue frozen (SIGSTOP) {args.freeze:g} s, {args.clients} keep-alive clients ...", flush=True)
        frozen = freeze(stack, clients, args.freeze)
    report(args, rows, frozen)
    ok = (all(r["exit"] == 0 and r["on_stable"] and r["failed"] == 0 and r["restored"] <= 1.0 for r in rows)
          and frozen["failed"] == 0 and frozen["slowest"] <= 3.0)
    return 0 if ok else 1


def report(args, rows: list[dict], frozen: dict) -> None:
    seconds = [r["seconds"] for r in rows]
    restored = [r["restored"] for r in rows]
    switches = [r["switch_ms"] for r in rows if isinstance(r["switch_ms"], (int, float))]
    print(f"\nRun of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.clients} keep-alive clients\n")
    print("| what | figure |")
    print("|---|---|")
    print(f"| deploys preempted during the bake (abort / rollback alternating) | {len(rows)} |")
    print(f"| from the command to the last answer of the new version (users back on stable): median / max | "
          f"{statistics.median(restored):.2f} s / {max(restored):.2f} s |")
    print(f"| the whole `bluegreen abort`/`rollback` command (until the front door is verified on the stable "
          f"version): median / max | {statistics.median(seconds):.2f} s / {max(seconds):.2f} s |")
    if switches:
        print(f"| of which the switch itself (history `duration_ms`): median / max | "
              f"{statistics.median(switches):.0f} ms / {max(switches):.0f} ms |")
    since = [r["since_ms"] for r in rows if isinstance(r["since_ms"], (int, float))]
    if since:
        print(f"| from the controller taking the command to the front door verified on stable (history "
              f"`since_ms`): median / max | {statistics.median(since):.0f} ms / {max(since):.0f} ms |")
    print(f"| preemptions restoring the stable version within 1 s | {sum(r['restored'] <= 1.0 for r in rows)} of "
          f"{len(rows)} |")
    print(f"| requests during the preemptions / failed | {sum(r['requests'] for r in rows)} / "
          f"{sum(r['failed'] for r in rows)} |")
    print(f"| deploys that exited non-zero (aborted) | {sum(r['deploy_exit'] != 0 for r in rows)} of {len(rows)} |")
    print(f"| active color frozen (SIGSTOP) | {args.freeze:g} s |")
    print(f"| requests during the freeze (+3 s) / failed | {frozen['requests']} / {frozen['failed']} |")
    print(f"| slowest request / requests over 3 s | {frozen['slowest']:.2f} s / {frozen['over_3s']} |")
    print(f"| p50 / p99 during the freeze | {frozen['p50_ms']:.1f} ms / {frozen['p99_ms']:.0f} ms |")
    print(f"| answered by the other color (v1.1.0) meanwhile | {frozen['other_color']} |")
    print(f"| front door after the freeze | {frozen['front_after']} |")


if __name__ == "__main__":
    sys.exit(main())
