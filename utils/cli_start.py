"""How long the controller takes to start: median wall time of a command over N runs.

Usage: .venv/bin/python utils/cli_start.py [--runs 21] [-- COMMAND ...]
Default command: the installed `bluegreen --help`. Prints one markdown row per command.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("command", nargs="*", default=[str(BIN / "bluegreen"), "--help"])
    args = parser.parse_args(argv)
    seconds = median_seconds(args.command, args.runs)
    print(f"| `{' '.join(Path(args.command[0]).name if i == 0 else a for i, a in enumerate(args.command))}` "
          f"| {seconds * 1000:.0f} ms (median of {args.runs}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
