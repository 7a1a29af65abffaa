"""Fault injection: a controller error at every step of deploy, a canary, watch, rollback and abort.

Each command runs once cleanly through the real command line (``cli.main``) over the fake
world, counting every call it makes that can fail in production: the runtime (start, stop),
the proxy (route, split, mirror, config, reload) and the store (the lock, reading the
state, writing the state, the history and the window). Then it runs again once per such
call (the reads a judged window makes between two polls count as one), from the same
starting point, with that one call raising the error the real part raises (a command that
failed, a full disk, a state file that cannot be read). Every run must end with exit 1 and
one line on stderr naming the fault, no traceback, the recorded state agreeing with what
nginx serves (the front door's color, each color's version, no canary share left behind
by an ended rollout), and a history line naming the fault.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import re
import subprocess
import threading

import pytest

from app.control import cli, context, store
from app.control.context import Context
from app.control.rollout import Phase
from app.control.store import StateStore
from app.errors import ControllerError
from tests.control.fakes import Colors, World, write_card

BAKE = """
[bake]
period = 4.0
interval = 1.0
failure_limit = 1
min_labelled = 10
min_requests = 20
max_error_rate = 0.1
require_labels = false
"""
WORLD_STEPS = ("start_color", "stop_color", "route", "set_probation", "lease", "split", "mirror", "apply", "reload",
               "start")
# The end of a lease whose files cannot be removed is a warning, not a failure: they lapse by
# themselves within seconds (app/control/lease.py).
LEASE_END = "proxy.end_lease"
STORE_STEPS = ("locked", "read", "save", "append", "request_abort", "save_window")


def steps(calls: list[str]) -> list[int]:
    """The calls to fail, one run each: every call, except a read of the state right after
    another (the checks a judged window makes between two polls are one step)."""
    return [i for i, call in enumerate(calls) if call != "store.read" or i == 0 or calls[i - 1] != call]


class Killed(BaseException):
    """Stands for kill -9: the command stops where it is, nothing runs after."""


class Faults:
    """Counts the calls that can fail; makes call number ``at`` fail once."""

    def __init__(self):
        self.calls: list[str] = []
        self.counting = False
        self.at: int | None = None

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            # The lease's renewals run on a thread of their own, at real-time moments: they are
            # not steps of the command (a renewal that fails is tested in tests/control/test_lease.py).
            if self.counting and threading.current_thread() is threading.main_thread():
                step = LEASE_END if name == "proxy.lease" and args == (None,) else name
                self.calls.append(step)
                if len(self.calls) - 1 == self.at:
                    raise ControllerError(f"injected fault {self.at} in {step}")
            return fn(*args, **kwargs)
        return call


class Scene:
    """A fake world, a run directory and the command line over them."""

    def __init__(self, root, faults: Faults):
        self.faults = faults
        models = root / "models"
        for version, accuracy in (("v1.0.0", 0.95), ("v1.1.0", 0.95), ("v1.2.0", 1.0)):
            write_card(models, version, accuracy)
        self.world = World(models)
        self.world.traffic = 200.0
        for name in WORLD_STEPS:
            setattr(self.world, name, faults.wrap(f"proxy.{name}" if name not in ("start_color", "stop_color")
                                                  else f"runtime.{name}", getattr(self.world, name)))
        self.config = root / "bluegreen.toml"
        self.config.write_text(f'run_dir = "run"\nmodels_dir = "{models}"\n' + BAKE)
        self.run_dir = root / "run"

    def context(self, config, say) -> Context:
        store = StateStore(config.run_dir, clock=self.world)
        for name in STORE_STEPS:
            setattr(store, name, self.faults.wrap(f"store.{name}", getattr(store, name)))
        return Context(config, Colors(self.world), self.world, self.world, store, self.world, say)

    def cli(self, *argv: str) -> int:
        return cli.main(["--config", str(self.config), *argv])

    def state(self):
        return StateStore(self.run_dir).read({})

    def history(self) -> list[dict]:
        return StateStore(self.run_dir).history()


def promoted_v1_2(scene: Scene) -> None:
    assert scene.cli("deploy", "v1.2.0") == 0


def failing_green(scene: Scene) -> None:
    promoted_v1_2(scene)
    scene.world.version_error_rates["v1.2.0"] = 0.5


# name: (set-up after `up`, the command, its exit code when nothing fails)
SCENARIOS = {
    "deploy": (None, ["deploy", "v1.2.0"], 0),
    "deploy --canary": (None, ["deploy", "v1.2.0", "--canary", "20,100", "--step-seconds", "4"], 0),
    "watch": (failing_green, ["watch", "--duration", "6"], 1),
    "rollback": (promoted_v1_2, ["rollback"], 0),
}


def run_scene(tmp_path, name: str, at: int | None, capsys, monkeypatch) -> tuple[Scene, int, str, str, int]:
    """Set the scene up without faults, then run the command with call ``at`` failing."""
    setup, argv, _ = SCENARIOS[name]
    faults = Faults()
    scene = Scene(tmp_path / f"{name.replace(' ', '')}-{at}", faults)
    monkeypatch.setattr(context, "build_context", scene.context)
    assert scene.cli("up") == 0
    if setup:
        setup(scene)
    events_before = len(scene.history())
    capsys.readouterr()
    faults.counting, faults.at = True, at
    code = scene.cli(*argv)
    faults.counting = False
    out, err = capsys.readouterr()
    return scene, code, out, err, events_before


def consistent(scene: Scene, where: str = "") -> None:
    """The record agrees with what nginx serves and what each color runs."""
    state, world = scene.state(), scene.world
    assert state.active == world.routed == world.routed_color(), where
    assert world.probation is None, f"{world.probation} outlived its rollout on probation: {where}"
    for color, running in world.colors.items():
        if running.version is not None:
            assert state.versions[color] == running.version, f"{color}: {where}"
    assert not state.phase.running, f"the rollout is left {state.phase.value}: {where}"
    assert world.split_share()[1] == 0, f"a canary share outlived its rollout: {where}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_fault_at_every_step_is_one_line_exit_1_a_consistent_state_and_a_recorded_event(tmp_path, capsys,
                                                                                           monkeypatch, name):
    scene, code, out, err, _ = run_scene(tmp_path, name, None, capsys, monkeypatch)
    assert code == SCENARIOS[name][2], out + err
    consistent(scene)
    assert len(scene.faults.calls) >= 5, scene.faults.calls  # the counting saw the command at work
    for at in steps(scene.faults.calls):
        handled(name, at, *run_scene(tmp_path, name, at, capsys, monkeypatch), clean_exit=SCENARIOS[name][2])


def handled(name: str, at: int, scene: Scene, code: int, printed: str, err: str, before: int,
            clean_exit: int = 1) -> None:
    """The command that met fault ``at``: exit 1, one line naming the fault, no traceback, a
    record that agrees with the world, and the fault in the history. A lease whose end failed
    is a warning in the command's output, which otherwise ends as it would have."""
    fault = f"injected fault {at} in {scene.faults.calls[at]}"
    where = f"{name}, step {at} ({scene.faults.calls[at]}):\n{printed}{err}"
    if scene.faults.calls[at] == LEASE_END:
        assert code == clean_exit and "Traceback" not in printed + err, where
        assert f"warning: the lease could not be ended at once ({fault}); it lapses by itself" in printed, where
        consistent(scene, where)
        return
    assert code == 1, where
    assert "Traceback" not in printed + err, where
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bluegreen: ") and fault in lines[0], where
    consistent(scene, where)
    recorded = scene.history()[before:]
    assert any(fault in event.get("reason", "") for event in recorded), where + f"\n{recorded}"


def abort_during_the_bake(tmp_path, at: int | None, capsys, monkeypatch) -> tuple[Scene, int, str, str, int]:
    """A deploy whose bake is preempted by `bluegreen abort` from another terminal (played here
    by the clock: the abort runs 2 s into the bake), with the abort's call ``at`` failing.
    Returns the abort's exit code and its stderr, and everything printed."""
    faults = Faults()
    scene = Scene(tmp_path / f"abort-{at}", faults)
    monkeypatch.setattr(context, "build_context", scene.context)
    assert scene.cli("up") == 0
    before = len(scene.history())
    aborted: list[tuple[int, str]] = []

    def abort(world):
        faults.counting, faults.at = True, at
        with contextlib.redirect_stderr(io.StringIO()) as err:
            aborted.append((scene.cli("abort"), err.getvalue()))
        faults.counting = False

    scene.world.at.append((scene.world.now + 2.0, abort))
    capsys.readouterr()
    scene.cli("deploy", "v1.2.0")  # aborted, or promoted when the abort failed before it asked
    out, err = capsys.readouterr()
    assert aborted, "the abort ran during the bake"
    code, abort_err = aborted[0]
    return scene, code, abort_err, out + err, before


def test_a_fault_at_every_step_of_an_abort_during_a_bake(tmp_path, capsys, monkeypatch):
    scene, code, err, printed, _ = abort_during_the_bake(tmp_path, None, capsys, monkeypatch)
    assert code == 0 and err == "", printed
    assert scene.state().phase is Phase.ABORTED and scene.world.routed == "blue"
    assert len(scene.faults.calls) >= 5, scene.faults.calls
    for at in steps(scene.faults.calls):
        scene, code, err, printed, before = abort_during_the_bake(tmp_path, at, capsys, monkeypatch)
        handled("abort", at, scene, code, printed, err, before)  # the deploy, preempted, ended its rollout


# -- a full disk: the real OSError, from any write of the command on --------------------------
def exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class FullDisk:
    """The run directory's file system filling up: from write number ``at`` of the command on,
    every write of the store fails with ENOSPC, the real ``OSError``, through the store's own
    code (the state, the history, the window, the requests, the failovers). With
    ``appends_fit``, the history's short appends still fit in the room its last block has
    while a whole file rewritten (the state) needs blocks there are none of: what a disk
    filled by nginx's and the colors' logs did. ``free`` makes room again."""

    def __init__(self, appends_fit: bool = False):
        self.appends_fit = appends_fit
        self.writes = self.refused = 0
        self.counting = False
        self.at: int | None = None

    def full(self, path, append: bool = False) -> None:
        if self.counting:
            self.writes += 1
            if self.at is not None and self.writes - 1 >= self.at and not (append and self.appends_fit):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def free(self) -> None:
        self.counting, self.at = False, None

    def install(self, monkeypatch) -> None:
        write_json, disk = store.atomic_write_json, self

        def atomic_write_json(path, obj):
            disk.full(path)
            return write_json(path, obj)

        class Os:  # the store's view of the os module: its appends fill the disk too
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def write(fd, data):
                disk.full(f"fd {fd}", append=True)
                return os.write(fd, data)

        monkeypatch.setattr(store, "atomic_write_json", atomic_write_json)
        monkeypatch.setattr(store, "os", Os())


def on_a_filling_disk(tmp_path, name: str, at: int | None, capsys, monkeypatch,
                      appends_fit: bool = False) -> tuple[Scene, FullDisk, int, str, str, int]:
    """Set the scene up, then run the command with the disk full from its write ``at`` on."""
    setup, argv, _ = SCENARIOS[name]
    disk = FullDisk(appends_fit)
    scene = Scene(tmp_path / f"full-{name.replace(' ', '')}-{at}-{appends_fit}", Faults())
    monkeypatch.setattr(context, "build_context", scene.context)
    disk.install(monkeypatch)
    assert scene.cli("up") == 0
    if setup:
        setup(scene)
    before = len(scene.history())
    capsys.readouterr()
    disk.counting, disk.at = True, at
    code = scene.cli(*argv)
    disk.free()
    out, err = capsys.readouterr()
    return scene, disk, code, out, err, before


def history_agrees_with_the_state(scene: Scene, before: int, where: str) -> None:
    """No line of the history claims an outcome the state lacks: the end of the rollout the state
    holds, and the last move of the front door."""
    state, events = scene.state(), scene.history()[before:]
    rollout = state.rollout
    for event in events:
        if event["action"] == "deploy" and rollout and event.get("rollout") == rollout.id:
            assert event["outcome"] == rollout.phase.value, \
                f"history {event['outcome']}, state {rollout.phase.value}: {where}"
    moves = [e for e in events if e.get("to") in ("blue", "green") and e["outcome"] in ("succeeded", "repaired")]
    if moves:
        assert moves[-1]["to"] == state.active, f"history says {moves[-1]['to']}, state {state.active}: {where}"


@pytest.mark.parametrize("appends_fit", [False, True], ids=["nothing-fits", "appends-fit"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_a_disk_that_fills_at_any_write_leaves_history_and_state_agreeing_and_users_on_a_judged_version(
        tmp_path, capsys, monkeypatch, name, appends_fit):
    scene, disk, code, out, err, _ = on_a_filling_disk(tmp_path, name, None, capsys, monkeypatch)
    assert code == SCENARIOS[name][2], out + err
    writes = disk.writes
    assert writes >= 3  # the counting saw the command write
    for at in range(writes):
        scene, disk, code, out, err, before = on_a_filling_disk(tmp_path, name, at, capsys, monkeypatch, appends_fit)
        where = f"{name}, the disk full from write {at} of {writes}:\n{out}{err}"
        assert "Traceback" not in out + err, where
        if disk.refused:
            assert code == 1, where
            lines = err.splitlines()
            assert len(lines) == 1 and lines[0].startswith("bluegreen: ") and "No space left on device" in lines[0], \
                where
        else:  # only history lines came after it, and they fitted
            assert code == SCENARIOS[name][2], where
        said = re.findall(r"(?:traffic (?:is |stays |back )?on|nginx routes to) (blue|green)", err)
        assert not said or said[-1] == scene.world.routed_color(), f"the line says {said[-1]}: {where}"
        history_agrees_with_the_state(scene, before, where)
        state, world = scene.state(), scene.world
        served = world.colors[world.routed_color()].version
        decided = state.rollout and state.rollout.phase in (Phase.PROMOTED, Phase.DEGRADED)
        judged = served in state.promoted or (decided and served == state.rollout.version)
        assert judged, f"users left on {served}, which nothing judges any more: {where}"
        assert world.split_share()[1] == 0 or state.phase.running, where
        # The command's process has exited; room again: the next command makes the record whole,
        # and says nothing it lacks.
        if state.phase.running:
            state.rollout.pid = exited_pid()
            StateStore(scene.run_dir).save(state)
        assert scene.cli("reconcile") == 0, where + capsys.readouterr().err
        consistent(scene, where)
        history_agrees_with_the_state(scene, before, where)
