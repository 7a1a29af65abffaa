"""Paired-answers benchmark: what a bake's pairing costs users at the front door.

One local stack on loopback (nginx, blue active with v1.0.0, the default `[bake]` except a
bake long enough for every row); the same closed-loop load in every row: ``--clients``
keep-alive clients posting single-row predictions for ``--seconds``. Rows:
  * no judged window: blue active, nothing paired;
  * during a real bake of v1.1.0 (`bluegreen deploy`): green active, nginx sending a copy of
    every request (``paired_sample``, the default 100%) to blue through its relay;
  * the same bake with blue, the stable color answering the copies, frozen (SIGSTOP).
Each row prints requests/s, p50 and p99 as the clients saw them, failed requests, and the
pairs the bake's judge had counted by the row's end (``window.json``). Every figure is
from this run.

Usage: .venv/bin/python utils/paired_bench.py [--seconds 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.control.config import BakeSettings  # noqa: E402
from utils.local_stack import LocalStack  # noqa: E402
from utils.shadow_bench import DutyCycle, load  # noqa: E402

LONG_BAKE = "[bake]\nperiod = 600.0\n"


def pairs(stack: LocalStack) -> int | None:
    try:
        return json.loads((stack.run_dir / "window.json").read_text()).get("paired")
    except (OSError, ValueError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    sample = BakeSettings().paired_sample
    rows = []
    with tempfile.TemporaryDirectory(prefix="paired-bench-") as tmp:
        stack = LocalStack(Path(tmp), extra_toml=LONG_BAKE)
        deploy = None
        try:
            stack.cli("up")
            load(stack.front, args.clients, 2.0)  # warm-up
            rows.append(("no judged window (blue active, nothing paired)", load(stack.front, args.clients,
                                                                                args.seconds), None))
            deploy = stack.popen("deploy", "v1.1.0")
            deadline = time.monotonic() + 60
            while pairs(stack) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if pairs(stack) is None:
                raise SystemExit("the bake's window did not begin within 60 s")
            blue = stack.gunicorn_pids("blue")
            for name, stopped in ((f"a bake of v1.1.0 on green, {sample}% paired with blue", 0.0),
                                  ("the same bake, blue (answering the copies) frozen", 100.0)):
                if stopped:
                    with DutyCycle(blue, stopped):
                        figures = load(stack.front, args.clients, args.seconds)
                else:
                    figures = load(stack.front, args.clients, args.seconds)
                rows.append((name, figures, pairs(stack)))
        finally:
            if deploy is not None:
                stack.cli("abort", check=False)
                deploy.communicate(timeout=120)
            stack.down()
    print(f"{args.clients} keep-alive clients, {args.seconds:g} s a row, POST /predict through the front door")
    print("| front door | requests/s | p50 ms | p99 ms | failed | pairs judged by the row's end |")
    print("|---|---|---|---|---|---|")
    for name, f, counted in rows:
        print(f"| {name} | {f['per_second']:.0f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {f['failed']} | "
              f"{'-' if counted is None else counted} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
