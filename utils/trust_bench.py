"""Red-team benchmark of the trust boundary, on a private local stack (loopback only).

Measures, in one run, with the documented configuration:
  * feedback poisoning: wrong labels posted without the token, then what the color counted
    and which color the front door serves;
  * slowloris: ordinary requests (from 127.0.0.1) while N connections from 127.0.0.2 hold
    half-sent request headers, against the same requests with no attack;
  * invented methods: /health latency before and after M requests with invented methods
    (pipelined on keep-alive connections through the front door).
Prints one table (docs/PERFORMANCE.md, "Trust boundary", records a run).

Usage: .venv/bin/python utils/trust_bench.py [--slow 1000] [--methods 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.local_stack import LocalStack  # noqa: E402

ROW = [5.1, 3.5, 1.4, 0.2]
ATTACKER = "127.0.0.2"


def latencies_ms(url: str, count: int, method: str = "GET", body=None) -> tuple[int, list[float]]:
    answered, times = 0, []
    for _ in range(count):
        began = time.perf_counter()
        try:
            response = requests.request(method, url, json=body, timeout=5, headers={"Connection": "close"})
            answered += response.status_code == 200
        except requests.RequestException:
            pass
        times.append((time.perf_counter() - began) * 1000)
    return answered, times


def p(times: list[float], q: float) -> float:
    return sorted(times)[min(len(times) - 1, int(q * len(times)))]


def hold_slow_connections(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((ATTACKER, 0))
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        held.append(sock)
    time.sleep(0.5)
    for sock in held:
        with contextlib.suppress(OSError):
            sock.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return held


def invented_methods(port: int, total: int, per_batch: int = 500) -> int:
    """Send ``total`` requests with distinct invented methods, pipelined; return the 405s seen."""
    seen, sent = 0, 0
    while sent < total:
        batch = min(per_batch, total - sent)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            data = b"".join(b"INVENT%s /health HTTP/1.1\r\nHost: x\r\n\r\n" % _letters(sent + i).encode()
                            for i in range(batch))
            sock.sendall(data + b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = b""
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                out += chunk
        seen += out.count(b"HTTP/1.1 405")
        sent += batch
    return seen


def _letters(n: int) -> str:
    return "".join(chr(65 + int(d)) for d in str(n))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow connections to hold")
    parser.add_argument("--methods", type=int, default=100_000, help="requests with invented methods")
    parser.add_argument("--requests", type=int, default=200, help="ordinary requests per measurement")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bluegreen-trust-") as directory:
        stack = LocalStack(Path(directory))
        stack.cli("up")
        try:
            blue = f"http://127.0.0.1:{stack.blue_port}"
            # 1. feedback poisoning
            codes = [requests.post(stack.front + "/feedback", json={"x": ROW, "label": "virginica"}).status_code
                     for _ in range(25)]
            live = requests.get(blue + "/health").json()["live"]
            served = requests.get(stack.front + "/health").headers["X-Color"]
            rows.append(("25 wrong labels without the token", f"answers {sorted(set(codes))}",
                         f"labelled {live['labelled']}, front door still {served}"))
            # 2. slowloris
            answered, calm = latencies_ms(stack.front + "/predict", args.requests, "POST", {"x": ROW})
            rows.append(("POST /predict, no attack", f"{answered}/{args.requests} answered",
                         f"p50 {p(calm, 0.5):.1f} ms, p99 {p(calm, 0.99):.1f} ms"))
            held = hold_slow_connections(stack.port, args.slow)
            try:
                time.sleep(1.0)
                answered, attacked = latencies_ms(stack.front + "/predict", args.requests, "POST", {"x": ROW})
            finally:
                for sock in held:
                    sock.close()
            rows.append((f"POST /predict, {args.slow} slowloris connections open", f"{answered}/{args.requests} "
                         "answered", f"p50 {p(attacked, 0.5):.1f} ms, p99 {p(attacked, 0.99):.1f} ms"))
            # 3. invented methods
            _, before = latencies_ms(blue + "/health", 50)
            began = time.perf_counter()
            refused = invented_methods(stack.port, args.methods)
            took = time.perf_counter() - began
            _, after = latencies_ms(blue + "/health", 50)
            metrics_bytes = len(requests.get(blue + "/metrics").content)
            rows.append(("GET /health (color), before", "", f"median {statistics.median(before):.2f} ms"))
            rows.append((f"{args.methods} invented methods via the front door", f"{refused} answered 405",
                         f"{took:.1f} s"))
            rows.append(("GET /health (color), after", f"/metrics {metrics_bytes / 1024:.1f} KiB",
                         f"median {statistics.median(after):.2f} ms"))
        finally:
            stack.down()
    print("| attack | outcome | figure |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
