"""The front door's files: the canary's bucket markers and its log of requests, on a real filesystem."""

from __future__ import annotations

import os

import pytest

from app.control.config import load_config
from app.control.proxies import NginxFiles


@pytest.fixture
def files(tmp_path) -> NginxFiles:
    path = tmp_path / "bluegreen.toml"
    path.write_text('run_dir = "run"\n')
    files = NginxFiles(load_config(str(path), environ={}))
    files.dir.mkdir(parents=True)
    return files


def log_lines(files: NginxFiles, *colors: str) -> None:
    """Lines as nginx's `canary` log_format writes them."""
    with open(files.dir / "canary.log", "ab") as log:
        for color in colors:
            log.write(f"1764870000.123 {color} 200 upstream=127.0.0.1:8002 request_id=ab\n".encode())


def test_a_step_counts_only_the_requests_logged_after_its_mark(files):
    files.split("green", 10)
    log_lines(files, "green", "green", "blue")            # an earlier step's requests
    mark = files.canary_mark()
    assert mark == (files.dir / "canary.log").stat().st_size
    log_lines(files, "green", "blue", "green", "green")
    assert files.canary_requests("green", mark) == 3
    assert files.canary_requests("blue", mark) == 1


def test_a_new_canary_starts_the_log_again(files):
    log_lines(files, "green", "green")                    # a canary that ended (its share is 0%)
    assert files.canary_mark() == 0
    assert (files.dir / "canary.log").stat().st_size == 0
    log_lines(files, "green")
    assert files.canary_requests("green", 0) == 1


def test_a_mark_past_the_end_of_a_log_cut_since_counts_from_its_start(files):
    log_lines(files, "green")
    assert files.canary_requests("green", 10_000) == 1


def test_a_step_moves_its_markers_with_one_fsync(files, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    files.split("green", 10)
    assert len(synced) == 1
    files.split("green", 50)
    assert len(synced) == 2
    assert files.split_share() == ("green", 50)
    files.split("green", 50)                              # nothing to move: nothing to sync
    assert len(synced) == 2
    files.split("green", 0)
    assert files.split_share() == ("green", 0) and len(synced) == 3
