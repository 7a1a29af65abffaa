"""The lease's bound, measured: a deploy killed mid-window, and how long users still reach its version.

One local stack on loopback (nginx, blue active with v1.0.0), ``--clients`` keep-alive
clients posting predictions through the front door. Each run deploys v1.1.0 to green, as a
canary (10%, a step longer than the run) or straight into its bake (a bake longer than the
run), waits until users are answered by v1.1.0, kills the deploy with SIGKILL, and times
the last answer users got from v1.1.0 after the kill: nothing but nginx and the lease's
files (docs/adr/0017-a-lease-on-exposure.md) ends that exposure. `bluegreen up` then
repairs the record before the next run. Prints one table; docs/PERFORMANCE.md ("A
controller killed mid-window") records a run.

Usage: .venv/bin/python utils/lease_bench.py [--runs 3] [--clients 4] [--lease 10]
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


class Clients(ClientThreads):
    """Keep-alive clients posting predictions; the time of the latest answer from each version."""

    def __init__(self, url: str, count: int):
        self.url = url + "/predict"
        self.last: dict[str, float] = {}
        self.sent = 0
        self.failed = 0
        super().__init__(count)

    def _client(self) -> None:
        with requests.Session() as session:
            while not self.stop_event.is_set():
                try:
                    response = session.post(self.url, json={"x": [5.9, 3.0, 5.1, 1.8]}, timeout=10)
                    version = response.json().get("version") if response.status_code == 200 else None
                except (requests.RequestException, ValueError):
                    version = None
                with self.lock:
                    self.sent += 1
                    if version:
                        self.last[version] = time.monotonic()
                    else:
                        self.failed += 1


def phase(stack: LocalStack) -> str | None:
    try:
        rollout = json.loads((stack.run_dir / "state.json").read_text())["rollout"]
    except (OSError, ValueError, KeyError):
        return None
    return rollout and rollout["phase"]


def wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def one_run(stack: LocalStack, clients: Clients, window: str, lease: float) -> float:
    """Seconds from the SIGKILL of the deploy to the last answer users got from v1.1.0."""
    args = ("--canary", "10,100", "--step-seconds", "600") if window == "canary" else ()
    seen = clients.last.get("v1.1.0", 0.0)
    deploy = stack.popen("deploy", "v1.1.0", *args)
    wait(lambda: phase(stack) in ("canary", "baking") and clients.last.get("v1.1.0", 0.0) > seen, 90,
         f"users answered by v1.1.0 in the {window}")
    time.sleep(1.0)
    deploy.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    deploy.wait()
    wait(lambda: time.monotonic() - clients.last["v1.1.0"] > 3.0, lease + 20, "no more answers from v1.1.0")
    exposed = clients.last["v1.1.0"] - killed
    stack.cli("up")  # the record repaired: the rollout ended, the canary's markers cleared
    return exposed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--lease", type=float, default=10.0, help="bake.lease (10 s by default)")
    args = parser.parse_args()
    bake = f"[bake]\nperiod = 600.0\nmax_period = 600.0\ninterval = 0.5\nlease = {args.lease}\n"
    results: dict[str, list[float]] = {"canary": [], "bake": []}
    with tempfile.TemporaryDirectory(prefix="lease-bench-") as tmp, \
            LocalStack(Path(tmp), extra_toml=bake) as stack, Clients(stack.front, args.clients) as clients:
        for _ in range(args.runs):
            for window in results:
                results[window].append(one_run(stack, clients, window, args.lease))
                print(f"{window}: users answered by v1.1.0 until {results[window][-1]:.2f} s after the kill",
                      flush=True)
    print(f"\n{args.clients} keep-alive clients; bake.lease = {args.lease:g} s; {os.cpu_count()} cores; "
          f"{clients.sent} requests, {clients.failed} failed")
    print("| deploy killed (SIGKILL) during | runs | kill to the last answer from v1.1.0: min / median / max |")
    print("|---|---|---|")
    for window, seconds in results.items():
        print(f"| {'a 10% canary step' if window == 'canary' else 'the bake'} | {len(seconds)} | "
              f"{min(seconds):.1f} s / {statistics.median(seconds):.1f} s / {max(seconds):.1f} s |")
    return 0 if clients.failed == 0 and max(max(s) for s in results.values()) <= args.lease + 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
