"""Switch under load: one command that proves a deploy drops nothing.

Starts a private stack (free loopback ports, its own run directory), runs locust headless
against the front door, and during the run performs N switches, a gated deploy and a
rollback. Prints total requests, failures, the versions that answered, and latency
percentiles; exits non-zero on any failed request or failed step.

Usage: .venv/bin/python utils/switch_under_load.py [--duration 40] [--switches 6] [--users 8]
                                                   [--report-dir reports]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.local_stack import BIN, LocalStack  # noqa: E402

# The deploy bakes on the load itself: no labels come, so the bake does not wait for them.
SHORT_BAKE = "[bake]\nperiod = 3.0\ninterval = 0.5\nfailure_limit = 1\nrequire_labels = false\n"


def bluegreen(stack: LocalStack, *args: str) -> tuple[bool, str]:
    """Run one controller command, print a line with its timing, say whether it succeeded."""
    began = time.monotonic()
    result = stack.cli(*args, check=False)
    took = time.monotonic() - began
    line = (result.stdout.strip().splitlines() or result.stderr.strip().splitlines() or [""])[-1]
    print(f"  bluegreen {' '.join(args):22} exit {result.returncode}  {took:5.2f}s  {line}", flush=True)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
    return result.returncode == 0, line


def read_aggregate(prefix: Path) -> dict:
    with open(f"{prefix}_stats.csv") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return row
    raise RuntimeError("locust wrote no aggregated row")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=40, help="seconds of load")
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--report-dir", default=str(ROOT / "reports"))
    args = parser.parse_args(argv)
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    steps_ok = True
    with tempfile.TemporaryDirectory(prefix="bluegreen-load-") as tmp:
        stack = LocalStack(Path(tmp), extra_toml=SHORT_BAKE)
        ok, _ = bluegreen(stack, "up")
        if not ok:
            return 1
        prefix = report_dir / "switch_under_load"
        versions_file = Path(tmp) / "versions.json"
        env = dict(os.environ, LOCUST_VERSIONS_FILE=str(versions_file))
        locust = subprocess.Popen(
            [str(BIN / "locust"), "-f", str(ROOT / "utils" / "locustfile.py"), "--headless",
             "-u", str(args.users), "-r", str(args.users), "-t", f"{args.duration}s",
             "--host", stack.front, "--csv", str(prefix), "--html", f"{prefix}.html",
             "--only-summary", "--loglevel", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            time.sleep(3)
            actions = [("switch", "green" if i % 2 == 0 else "blue") for i in range(args.switches)]
            actions += [("deploy", "v1.1.0"), ("rollback",)]
            pause = max(0.5, (args.duration - 12) / len(actions))
            for action in actions:
                ok, _ = bluegreen(stack, *action)
                steps_ok &= ok
                time.sleep(pause)
            locust_err = locust.communicate(timeout=args.duration + 120)[1]
        finally:
            if locust.poll() is None:
                locust.kill()
            bluegreen(stack, "down")
        row = read_aggregate(prefix)
        versions = json.loads(versions_file.read_text()) if versions_file.exists() else {}
    requests_total, failures = int(row["Request Count"]), int(row["Failure Count"])
    print()
    print("| what | value |")
    print("|---|---|")
    print(f"| load | locust FastHttpUser, {args.users} users, {args.duration}s |")
    print(f"| switches | {args.switches} + 1 deploy + 1 rollback |")
    print(f"| requests | {requests_total} |")
    print(f"| failures | {failures} |")
    print(f"| versions seen | {', '.join(f'{v}: {n}' for v, n in sorted(versions.items()))} |")
    print(f"| throughput | {float(row['Requests/s']):.0f} req/s |")
    for p in ("50%", "95%", "99%", "99.9%", "100%"):
        print(f"| latency p{p.rstrip('%')} | {row[p]} ms |")
    print(f"\nreports: {prefix}_stats.csv, {prefix}.html")
    if failures or locust.returncode not in (0, None):
        print(f"FAILED: {failures} failed requests (locust exit {locust.returncode}) {locust_err[-500:]}",
              file=sys.stderr)
        return 1
    if not steps_ok:
        print("FAILED: a controller step failed", file=sys.stderr)
        return 1
    if len(versions) < 2:
        print(f"FAILED: expected both versions to answer, saw {versions}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
