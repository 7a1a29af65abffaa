"""In-process cost of one POST /predict through each entry point: the hot path (FAST_PATH=on)
and Flask's views (off), called as WSGI apps, with no HTTP, nginx or gunicorn around them;
beside them, an empty Flask endpoint (utils/bench_apps.py) called the same way.

Usage: .venv/bin/python utils/hotpath_bench.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import io
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.server import create_app  # noqa: E402
from utils.bench_apps import trivial  # noqa: E402

BODIES = {"1 row": b'{"x": [5.1, 3.5, 1.4, 0.2]}',
          "1000 rows": b'{"instances": [' + b", ".join([b"[5.1, 3.5, 1.4, 0.2]"] * 1000) + b"]}"}


def environ(body: bytes) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))}


def per_call_us(app, body: bytes, calls: int) -> float:
    def call():
        answer = app(environ(body), lambda status, headers, exc_info=None: None)
        b"".join(answer)
        if hasattr(answer, "close"):
            answer.close()

    call()
    # The fastest of five repeats: on a shared machine the others measure the neighbours.
    return min(timeit.repeat(call, number=max(calls // 5, 1), repeat=5)) / max(calls // 5, 1) * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args(argv)
    print("| POST /predict | hot path (µs) | Flask's views (µs) | an empty Flask endpoint (µs) |\n|---|---|---|---|")
    apps = {fast: create_app({"MODELS_DIR": str(ROOT / "models"), "FAST_PATH": fast}) for fast in ("on", "off")}
    for name, body in BODIES.items():
        calls = args.calls if name == "1 row" else max(args.calls // 50, 20)
        print(f"| {name} | {per_call_us(apps['on'], body, calls):.0f} | {per_call_us(apps['off'], body, calls):.0f} | "
              f"{per_call_us(trivial, body, calls):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
