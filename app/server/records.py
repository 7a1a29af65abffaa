"""Answers kept for the shadow report: request id, status, latency and predictions.

While a shadow runs, nginx marks the sampled front-door requests (``X-Bluegreen-Record``)
and sends a copy of each to the idle color (``X-Bluegreen-Shadow``); both colors keep
their answer here, and the controller pairs them by request id (``GET /records``). A
feedback that names the ``request_id`` of a prediction is kept too: the labelled
accuracy of both versions on the same requests. Each gunicorn worker appends JSON lines
to a file of its own (one ``write`` each, so lines never interleave); without a directory
(the Flask test client) the records stay in memory.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

# Per worker file: past it a worker keeps no more records (and counts what it dropped).
MAX_BYTES = 64 * 1024 * 1024


class Recorder:
    """Appends records and reads back every worker's."""

    def __init__(self, directory: str | None, max_bytes: int = MAX_BYTES):
        self.dir = Path(directory) if directory else None
        self.max_bytes = max_bytes
        self.memory: list[dict] = []
        self.dropped = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None
        self._size = 0

    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:  # a forked worker opens its own file
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.dir / f"records-{pid}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._pid, self._size = pid, os.fstat(self._fd).st_size
        return self._fd

    def append(self, record: dict) -> None:
        if self.dir is None:
            with self._lock:
                self.memory.append(record)
            return
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                fd = self._file()
                if self._size + len(line) > self.max_bytes:
                    self.dropped += 1
                    return
                os.write(fd, line)
            except OSError:  # a full disk (or a lost directory) costs the record, never the answer
                self.dropped += 1
                return
            self._size += len(line)

    def read(self, since: float = 0.0) -> list[dict]:
        """Every worker's records at or after ``since`` (a Unix time), oldest first per worker."""
        if self.dir is None:
            return [r for r in self.memory if r.get("t", 0) >= since]
        records = []
        for path in sorted(self.dir.glob("records-*.jsonl")) if self.dir.exists() else []:
            for line in path.read_bytes().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line being written right now
                if isinstance(record, dict) and record.get("t", 0) >= since:
                    records.append(record)
        return records
