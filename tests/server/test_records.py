"""The answers a color keeps for the paired checks: a full disk costs the record, never the answer."""

from __future__ import annotations

import errno
import os

from app.server import records
from app.server.records import Recorder


def test_a_record_that_cannot_be_written_is_dropped_and_counted(tmp_path, monkeypatch):
    recorder = Recorder(str(tmp_path / "records"))
    recorder.append({"id": "a", "t": 1.0})

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(records.os, "write", full)
    recorder.append({"id": "b", "t": 2.0})
    monkeypatch.undo()
    assert recorder.dropped == 1
    assert [r["id"] for r in recorder.read()] == ["a"]
