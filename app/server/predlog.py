"""The prediction log: a sample of the inputs a color served and the class it predicted.

`bluegreen drift` compares these inputs with the training data in the model's card
(docs/adr/0014-seeing-a-rollout.md). Each served row is kept with probability
``PREDLOG_SAMPLE`` (0.1 by default; 0 turns the log off), drawn per row, so a batch costs
no more per row than single predictions. Each gunicorn worker appends the rows of one
request as JSON lines to a file of its own (``predlog-<pid>.jsonl``, one ``write`` per
request, so lines never interleave), in ``PREDLOG_DIR`` or, by default, beside the color's
metrics files (wiped when the color starts). Past ``PREDLOG_MAX_BYTES`` (4 MiB) the file
becomes ``predlog-<pid>.jsonl.1``, replacing the older one: at most twice that per worker.
Without a directory (the Flask test client) the last rows stay in memory.

``GET /prediction-log?since=T`` serves the rows since T (a Unix time) on the color's own
port: nginx answers 404 there, and ``METRICS_TOKEN`` guards it like ``/metrics``.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections import deque
from pathlib import Path

from flask import Blueprint, current_app, request

from app.errors import InvalidInput
from app.server.auth import require_bearer
from app.server.responses import json_response

DEFAULT_SAMPLE = 0.1
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
MEMORY_ROWS = 10_000


class PredictionLog:
    """Appends sampled rows and reads back every worker's."""

    def __init__(self, directory: str | None, sample: float = DEFAULT_SAMPLE, max_bytes: int = DEFAULT_MAX_BYTES):
        if not 0 <= sample <= 1:
            raise ValueError(f"PREDLOG_SAMPLE must be between 0 and 1, not {sample}")
        if max_bytes < 1024:
            raise ValueError(f"PREDLOG_MAX_BYTES must be at least 1024, not {max_bytes}")
        self.dir = Path(directory) if directory else None
        self.sample = sample
        self.max_bytes = max_bytes
        self.memory: deque[dict] = deque(maxlen=MEMORY_ROWS)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None
        self._size = 0
        self._labels: dict[str, str] = {}
        self._log_skip = math.log(1.0 - sample) if 0 < sample < 1 else 0.0

    @classmethod
    def from_settings(cls, settings: dict, metrics_dir: str | None) -> PredictionLog:
        """The log the settings ask for: ``PREDLOG_DIR``, else beside the metrics files."""
        directory = settings["PREDLOG_DIR"] or (os.path.join(metrics_dir, "predlog") if metrics_dir else None)
        return cls(directory, settings["PREDLOG_SAMPLE"], settings["PREDLOG_MAX_BYTES"])

    def record(self, rows, predictions: list[str]) -> None:
        """Keep each of ``rows`` (and its predicted class) with probability ``sample``."""
        if not self.sample:
            return
        picked = self._pick(len(predictions))
        if not picked:
            return
        now = round(time.time(), 3)
        if self.dir is None:
            with self._lock:
                self.memory.extend({"t": now, "x": rows[i].tolist(), "y": predictions[i]} for i in picked)
            return
        # Written by hand: a JSON line per row at a fraction of json.dumps's cost (the values
        # are finite floats, validated before the model saw them; repr is their JSON).
        values = rows[picked].tolist()
        data = "".join(f'{{"t":{now},"x":[{",".join(map(repr, row))}],"y":{self._label(predictions[i])}}}\n'
                       for i, row in zip(picked, values)).encode()
        with self._lock:
            fd = self._file()
            if self._size and self._size + len(data) > self.max_bytes:
                fd = self._rotate()
            os.write(fd, data)
            self._size += len(data)

    def _pick(self, n: int) -> list[int]:
        """Which of ``n`` rows to keep, each with probability ``sample``: the gaps between kept
        rows are drawn (geometric), so a batch costs a draw per kept row, not per row."""
        if self.sample >= 1:
            return list(range(n))
        picked, i = [], -1
        while True:
            i += 1 + int(math.log(1.0 - random.random()) / self._log_skip)
            if i >= n:
                return picked
            picked.append(i)

    def _label(self, name: str) -> str:
        text = self._labels.get(name)
        if text is None:
            text = self._labels[name] = json.dumps(name)
        return text

    def _path(self, pid: int) -> Path:
        return self.dir / f"predlog-{pid}.jsonl"

    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:  # a forked worker opens its own file
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path(pid), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._pid, self._size = pid, os.fstat(self._fd).st_size
        return self._fd

    def _rotate(self) -> int:
        path = self._path(self._pid)
        os.close(self._fd)
        os.replace(path, path.with_name(path.name + ".1"))
        self._fd = None
        return self._file()

    def read(self, since: float = 0.0) -> list[dict]:
        """Every worker's rows at or after ``since`` (a Unix time), the older file of each first."""
        if self.dir is None:
            with self._lock:
                return [e for e in self.memory if e["t"] >= since]
        rows = []
        paths = sorted(self.dir.glob("predlog-*.jsonl*"), key=lambda p: (p.name.split(".")[0], -len(p.suffixes)))
        for path in paths if self.dir.exists() else []:
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:  # rotated away while listed
                continue
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line being written right now
                if isinstance(entry, dict) and isinstance(entry.get("t"), (int, float)) and entry["t"] >= since:
                    rows.append(entry)
        return rows


bp = Blueprint("predlog", __name__)


@bp.get("/prediction-log")
def prediction_log():
    """The sampled rows since ``?since=`` (a Unix time); never proxied by nginx."""
    srv = current_app.extensions["model_server"]
    if srv.settings["METRICS_TOKEN"]:  # the operator's endpoints share the metrics token
        require_bearer(srv.settings["METRICS_TOKEN"], request.environ.get("HTTP_AUTHORIZATION"),
                       "GET /prediction-log", "set METRICS_TOKEN")
    try:
        since = float(request.args.get("since", "0"))
    except ValueError:
        raise InvalidInput('"since" must be a Unix time in seconds') from None
    return json_response({"color": srv.color, "version": srv.version, "sample": srv.predlog.sample,
                          "features": srv.card["feature_names"], "rows": srv.predlog.read(since)})
