"""Rollbacks and aborts under faults, against real nginx and gunicorn processes.

Each test is one way things go wrong for an operator: a rollback after a dry run, an
abort during a bake under load, a killed nginx master, a stand-in server on a color's
port, a reload nginx cannot apply, a frozen color, one dead worker, a worker that cannot
boot, a run directory that cannot be written.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from sklearn.linear_model import LogisticRegression

from app.training.cards import save_version
from app.training.data import iris_split
from tests.helpers import ROOT, VENV_BIN, ClientThreads, Stack, Traffic, free_port, pids_matching, wait_until

pytestmark = pytest.mark.integration

LONG_BAKE = """
[bake]
period = 60.0
interval = 0.5
failure_limit = 1
"""


@pytest.fixture
def stack(models_dir, tmp_path):
    with Stack(tmp_path, models_dir, LONG_BAKE) as stack:
        yield stack


def rollout_phase(stack) -> str | None:
    rollout = json.loads((stack.run_dir / "state.json").read_text())["rollout"]
    return rollout and rollout["phase"]


def listening(port: int) -> bool:
    return pids_matching(f"127.0.0.1:{port}") != [] or _connects(port)


def _connects(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- 1. rollback targets a promoted version, never the other slot ---------------------------
def test_a_rollback_after_a_dry_run_serves_the_promoted_version_not_the_candidate(stack, models_dir):
    stack.cli("switch", "green")
    stack.cli("switch", "blue")  # both shipped versions have been promoted; v1.1.0 is the rollback target
    x_train, _, y_train, _, _ = iris_split()
    save_version(LogisticRegression(C=0.5, max_iter=500).fit(x_train, y_train), "v9.9.8", models_dir)

    refused = stack.cli("deploy", "v9.9.8", "--dry-run", check=False)
    assert refused.returncode == 1
    assert "green runs v1.1.0, the version a rollback returns to; a dry run would replace it" in refused.stderr

    assert stack.cli("deploy", "v9.9.8", "--dry-run", "--replace-idle").returncode == 0
    assert stack.status()["colors"]["green"]["version"] == "v9.9.8"

    result = stack.cli("rollback")
    assert "green: loading v1.1.0" in result.stdout
    front = requests.post(stack.front + "/predict", json={"x": [5.1, 3.5, 1.4, 0.2]}).json()
    assert (front["color"], front["version"]) == ("green", "v1.1.0")
    assert "v9.9.8" not in stack.status()["stable"]


# -- 2. abort and rollback preempt a bake at once, under load --------------------------------
@pytest.mark.parametrize("command", ["abort", "rollback"])
def test_an_operator_command_during_the_bake_restores_the_stable_version_without_failures(stack, command):
    with Traffic(stack.front, clients=8) as traffic:
        deploy = stack.popen("deploy", "v1.1.0")
        wait_until(lambda: rollout_phase(stack) == "baking", 60, what="the bake to begin")
        assert stack.front_color() == "green"
        started = time.monotonic()
        result = stack.cli(command)
        took = time.monotonic() - started
        assert stack.front_color() == "blue"
        out, err = deploy.communicate(timeout=30)
        time.sleep(0.3)
    print(f"\n{command} during the bake: `bluegreen {command}` took {took:.2f}s; {traffic.sent} requests, "
          f"{len(traffic.failures)} failed")
    assert "aborted the rollout of v1.1.0: traffic on blue (v1.0.0)" in result.stdout
    assert deploy.returncode == 1, out + err
    assert traffic.failures == []
    assert stack.status()["phase"] == "aborted"
    actions = [(e["action"], e["outcome"]) for e in stack.history()]
    assert (command, "requested") in actions
    assert ("rollback", "succeeded") in actions
    assert actions[-1] == ("deploy", "aborted")


# -- 4. an interrupted deploy is seen by the next command ------------------------------------
def test_a_deploy_killed_during_the_bake_is_reported_and_its_traffic_returned(stack):
    deploy = stack.popen("deploy", "v1.1.0")
    wait_until(lambda: rollout_phase(stack) == "baking", 60, what="the bake to begin")
    deploy.send_signal(signal.SIGKILL)
    deploy.wait()
    status = stack.cli("status").stdout
    assert f"the deploy of v1.1.0 (pid {deploy.pid}) ended while baking" in status
    refused = stack.cli("deploy", "v1.1.0", check=False)
    assert refused.returncode == 1 and "pass --force" in refused.stderr
    repaired = stack.cli("reconcile").stdout
    assert "traffic returned to v1.0.0" in repaired
    assert stack.front_color() == "blue"
    assert stack.status()["phase"] == "aborted"


def test_a_state_file_unreadable_for_a_moment_during_the_bake_ends_the_deploy_recorded(stack):
    state_file = stack.run_dir / "state.json"
    with Traffic(stack.front, clients=4) as traffic:
        deploy = stack.popen("deploy", "v1.1.0")
        wait_until(lambda: rollout_phase(stack) == "baking" and json.loads(state_file.read_text())["pairing"], 60,
                   what="the bake's window to begin")
        kept = state_file.read_bytes()
        garbage = stack.run_dir / "garbage"
        garbage.write_bytes(b"not json")
        os.replace(garbage, state_file)  # unreadable, atomically, for 3 s
        time.sleep(3.0)
        restored = stack.run_dir / "restored"
        restored.write_bytes(kept)
        os.replace(restored, state_file)
        out, err = deploy.communicate(timeout=60)
    assert deploy.returncode == 1, out + err
    assert err.count("\n") == 1 and err.startswith("bluegreen: deploy v1.1.0 failed: ") and "unreadable state" in err
    assert "Traceback" not in out + err
    assert traffic.failures == []
    assert stack.front_color() == "blue"
    assert stack.status()["phase"] == "aborted"
    last = stack.history()[-1]
    assert (last["action"], last["outcome"]) == ("deploy", "aborted") and "unreadable state" in last["reason"]


# -- 5. a killed nginx master ----------------------------------------------------------------
def test_a_killed_nginx_master_leaves_no_orphan_worker_behind(stack):
    master = stack.status()["nginx_pid"]
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: stack.status()["nginx_pid"] is None, what="the master to be gone")
    assert listening(stack.port)  # its worker still holds the front door

    up = stack.cli("up")
    assert "repaired: stopped nginx processes no master owned" in up.stdout
    assert stack.front_color() == "blue"

    os.kill(stack.status()["nginx_pid"], signal.SIGKILL)
    wait_until(lambda: stack.status()["nginx_pid"] is None, what="the master to be gone")
    down = stack.cli("down")
    assert "nothing of the stack listens any more" in down.stdout
    assert not any(listening(p) for p in (stack.port, stack.preview_port, stack.blue_port, stack.green_port))
    assert pids_matching(str(stack.run_dir)) == []


# -- 6. a process bluegreen did not start on a color's port ----------------------------------
class StandIn(http.server.BaseHTTPRequestHandler):
    """Answers /ready and /health like a color serving v1.1.0, but is not one."""

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        body = json.dumps({"status": "ok", "ready": True, "version": "v1.1.0", "color": "green"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_up_refuses_a_stand_in_server_on_a_color_port_and_down_says_it_still_listens(models_dir, tmp_path):
    stack = Stack(tmp_path, models_dir)
    stand_in = subprocess.Popen(
        [str(VENV_BIN / "python"), "-c",
         "import sys, http.server; sys.path.insert(0, sys.argv[2]); "
         "from tests.integration.test_faults import StandIn; "
         "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), StandIn).serve_forever()",
         str(stack.green_port), str(ROOT)], cwd=ROOT)
    try:
        wait_until(lambda: _connects(stack.green_port), what="the stand-in server")
        up = stack.cli("up", check=False)
        assert up.returncode == 1
        assert up.stderr.startswith(f"bluegreen: refusing to start green: 127.0.0.1:{stack.green_port} is answered "
                                    f"by pid {stand_in.pid} (")
        assert "which bluegreen did not start" in up.stderr
        assert stack.status()["colors"]["green"]["state"] == "down"
        down = stack.cli("down", check=False)
        assert down.returncode == 1
        assert f"something still listens: 127.0.0.1:{stack.green_port} (pid {stand_in.pid}" in down.stderr
        assert stand_in.poll() is None  # not ours: never stopped by bluegreen
    finally:
        stand_in.kill()
        stand_in.wait()
        stack.down()


def test_up_names_the_process_holding_the_front_door_port(models_dir, tmp_path):
    stack = Stack(tmp_path, models_dir)
    holder = subprocess.Popen([str(VENV_BIN / "python"), "-m", "http.server", "--bind", "127.0.0.1", str(stack.port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _connects(stack.port), what="the port holder")
        up = stack.cli("up", check=False)
        assert up.returncode == 1 and up.stderr.count("\n") == 1
        assert "nginx did not start: " in up.stderr
        assert f"port {stack.port} is held by pid {holder.pid}" in up.stderr
    finally:
        holder.kill()
        holder.wait()
        stack.down()


# -- 7. a reload nginx does not apply --------------------------------------------------------
def test_a_reload_onto_a_taken_port_is_undone_and_fails(stack):
    holder = subprocess.Popen([str(VENV_BIN / "python"), "-m", "http.server", "--bind", "127.0.0.1",
                               str(taken := free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    original = stack.config.read_text()
    live = (stack.run_dir / "nginx" / "nginx.conf").read_text()
    try:
        wait_until(lambda: _connects(taken), what="the port holder")
        stack.config.write_text(original.replace(f"preview_port = {stack.preview_port}", f"preview_port = {taken}"))
        with Traffic(stack.front, clients=2) as traffic:
            first = stack.cli("reload", check=False)
            second = stack.cli("reload", check=False)
    finally:
        stack.config.write_text(original)
        holder.kill()
        holder.wait()
    for result in (first, second):
        assert result.returncode == 1
        assert "nginx did not take the new config" in result.stderr
        assert "the previous config is back in place and serving" in result.stderr
    assert (stack.run_dir / "nginx" / "nginx.conf").read_text() == live
    assert traffic.failures == [] and traffic.sent > 0
    assert stack.history()[-1]["action"] == "reload" and stack.history()[-1]["outcome"] == "failed"


def test_a_template_that_lost_the_routing_rule_is_undone_and_fails(stack):
    template = (ROOT / "nginx" / "nginx.conf.j2").read_text()
    marker_rule = "        if (-f {{ marker }}) {\n            set $route_color green;\n        }\n"
    assert marker_rule in template
    broken = stack.dir / "no-route.conf.j2"
    broken.write_text(template.replace(marker_rule, "", 1))
    stack.cli("switch", "green")
    original = stack.config.read_text()
    stack.config.write_text(original.replace("[nginx]\n", f'[nginx]\ntemplate = "{broken}"\n'))
    try:
        result = stack.cli("reload", check=False)
    finally:
        stack.config.write_text(original)
    assert result.returncode == 1
    assert "the front door is not answered by green" in result.stderr
    assert "the previous config is back in place and serving" in result.stderr
    assert stack.front_color() == "green"


def test_a_reload_with_nginx_down_says_so_and_fails(stack):
    os.kill(stack.status()["nginx_pid"], signal.SIGQUIT)
    wait_until(lambda: stack.status()["nginx_pid"] is None, what="nginx to stop")
    result = stack.cli("reload", check=False)
    assert result.returncode == 1
    assert result.stderr == "bluegreen: nginx config unchanged, but nginx is not running (run `bluegreen up`)\n"


# -- 8. a frozen (SIGSTOP) active color ------------------------------------------------------
# Polls in a row that may find the color not answering before `watch` decides: more than a
# 6 s freeze lasts (a poll waits up to 2 s for an answer), and an error limit the freeze's
# failovers stay under. The failure limit itself is judged over the fakes
# (tests/control/test_reconciler.py); here the subject is what users and `watch` see.
PATIENT_WATCH = """
[bake]
period = 60.0
interval = 0.5
failure_limit = 20
max_error_rate = 0.5
"""


def test_a_frozen_active_color_costs_seconds_not_the_whole_freeze_and_watch_spares_it_once_it_resumes(
        models_dir, tmp_path):
    with Stack(tmp_path, models_dir, PATIENT_WATCH) as stack:
        pids = stack.gunicorn_pids("blue")
        watch = stack.popen("watch", "--duration", "12")
        seen = [watch.stdout.readline()]  # "watching blue ...": the freeze comes inside watch's window
        with Traffic(stack.front, clients=8, timeout=30) as traffic:
            time.sleep(1.0)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(6.0)
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            time.sleep(1.0)
        out, err = watch.communicate(timeout=30)
        out = "".join(seen) + out
        print(f"\nblue frozen 6s under 8 clients: {traffic.sent} requests, {len(traffic.failures)} failed, slowest "
              f"{traffic.slowest:.2f}s, versions {traffic.versions}\n{out}")
        assert traffic.failures == []
        assert traffic.slowest < 4.0  # a request waits for the read timeouts, not for the freeze to end
        assert traffic.versions.get("v1.1.0", 0) > 0  # the other color answered meanwhile
        assert watch.returncode == 0, out + err
        polls = [line for line in out.splitlines() if " poll " in line]
        assert any("does not answer (timed out)" in line for line in polls)  # watch saw the freeze
        assert ": fail" not in polls[-1]  # and the color answering again
        assert stack.front_color() == "blue"
        assert [e for e in stack.history() if e["action"] == "rollback"] == []


# -- 9. one dead worker of the active color --------------------------------------------------
def test_killing_one_worker_of_the_active_color_moves_no_traffic_to_the_other_version(stack):
    master = int((stack.run_dir / f"blue-{stack.blue_port}.pid").read_text())
    workers = [p for p in stack.gunicorn_pids("blue") if p != master]
    assert len(workers) == 2
    with Traffic(stack.front, clients=8) as traffic:
        time.sleep(1.0)
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(3.0)
    print(f"\none worker of blue killed: {traffic.sent} requests, {len(traffic.failures)} failed, "
          f"versions {traffic.versions}")
    assert set(traffic.versions) == {"v1.0.0"}
    assert traffic.failures == []
    failovers = [e for e in stack.history() if e["action"] == "failover"]
    assert failovers == []


def test_traffic_answered_by_the_other_color_is_counted_and_recorded(stack):
    with Traffic(stack.front, clients=4) as traffic:
        time.sleep(0.5)
        for pid in stack.gunicorn_pids("blue"):
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.5)
    answered_by_green = traffic.versions.get("v1.1.0", 0)
    assert answered_by_green > 0
    metrics = requests.get(f"http://127.0.0.1:{stack.green_port}/metrics").text
    assert "bluegreen_failover_requests_total" in metrics
    stack.cli("reconcile")
    failover = [e for e in stack.history() if e["action"] == "failover"][-1]
    assert (failover["from"], failover["to"]) == ("blue", "green")
    assert failover["requests"] >= answered_by_green


# -- 10. a worker that cannot boot -----------------------------------------------------------
def test_a_worker_that_cannot_boot_halts_gunicorn_with_a_clear_message(shipped_models, tmp_path):
    conf = tmp_path / "failing_boot_conf.py"
    conf.write_text(
        f"exec(open({str(ROOT / 'app' / 'server' / 'gunicorn_conf.py')!r}).read())\n"
        "_project_post_fork = post_fork\n\n"
        "def post_fork(server, worker):\n"
        "    _project_post_fork(server, worker)\n"
        "    raise RuntimeError('the worker cannot open its model session')\n"
    )
    env = {**os.environ, "MODEL_VERSION": "v1.0.0", "COLOR": "blue", "MODELS_DIR": str(shipped_models),
           "BIND": f"127.0.0.1:{free_port()}", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    process = subprocess.run([str(VENV_BIN / "gunicorn"), "-c", str(conf), "app.wsgi:app"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert process.returncode != 0
    assert "Worker failed to boot" in process.stderr
    assert process.stderr.count("Booting worker") <= 4  # it halted: no endless respawn


# -- 11. a run directory that cannot be written ----------------------------------------------
@pytest.fixture
def read_only_run_dir(tmp_path):
    """A read-only file system where the run directory is (a file in its place when mounting is not allowed)."""
    run = tmp_path / "run"
    run.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(run)],
                             capture_output=True).returncode == 0
    if not mounted:
        run.rmdir()
        run.write_text("")
    yield run
    if mounted:
        subprocess.run(["umount", str(run)], check=True)


@pytest.mark.parametrize("args", [("up",), ("switch", "green"), ("deploy", "v1.1.0"), ("reconcile",), ("down",)])
def test_a_run_directory_that_cannot_be_written_is_one_line_for_every_command(models_dir, tmp_path,
                                                                            read_only_run_dir, args):
    stack = Stack(tmp_path, models_dir)
    result = stack.cli(*args, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bluegreen: "), result.stderr
    assert "Traceback" not in result.stderr
    assert str(Path(read_only_run_dir).name) in result.stderr


# -- 12. a controller that dies or freezes while users reach an unjudged version --------------
# Windows longer than the test: only the lease can end the exposure. The lease is the default.
UNDECIDED = """
[bake]
period = 120.0
max_period = 120.0
interval = 0.5
"""


class Answers(ClientThreads):
    """Keep-alive clients posting predictions; the time of every answer from each version."""

    def __init__(self, url: str, clients: int = 4):
        self.url = url + "/predict"
        self.last: dict[str, float] = {}     # version -> time.monotonic() of its latest answer
        self.failures: list[str] = []
        super().__init__(clients)

    def _client(self):
        with requests.Session() as session:
            while not self.stop_event.is_set():
                try:
                    response = session.post(self.url, json={"x": [5.9, 3.0, 5.1, 1.8]}, timeout=10)
                    version = response.json()["version"] if response.status_code == 200 else None
                    failure = None if version else f"HTTP {response.status_code}"
                except Exception as exc:  # every failure is counted, never raised
                    version, failure = None, f"{type(exc).__name__}: {exc}"
                with self.lock:
                    if version:
                        self.last[version] = time.monotonic()
                    else:
                        self.failures.append(failure)


def records_size(stack, color: str) -> int:
    port = stack.blue_port if color == "blue" else stack.green_port
    return sum(p.stat().st_size for p in (stack.run_dir / "metrics" / f"{color}-{port}").rglob("records-*.jsonl"))


@pytest.mark.parametrize("phase, signal_", [("canary", signal.SIGKILL), ("baking", signal.SIGSTOP)])
def test_a_controller_gone_mid_window_leaves_users_on_the_stable_version_within_the_lease(
        models_dir, tmp_path, phase, signal_):
    with Stack(tmp_path, models_dir, UNDECIDED) as stack:
        lease = 10.0  # bake.lease's default
        with Answers(stack.front) as answers:
            args = ("--canary", "10,100", "--step-seconds", "120") if phase == "canary" else ()
            deploy = stack.popen("deploy", "v1.1.0", *args)
            wait_until(lambda: rollout_phase(stack) == phase and "v1.1.0" in answers.last, 60,
                       what=f"users answered by v1.1.0 while {phase}")
            time.sleep(1.0)
            os.kill(deploy.pid, signal_)
            gone = time.monotonic()
            wait_until(lambda: time.monotonic() - answers.last["v1.1.0"] > 3.0, lease + 10,
                       what="no more answers from v1.1.0")
            exposed = answers.last["v1.1.0"] - gone
            copies = records_size(stack, "blue") + records_size(stack, "green")
            time.sleep(1.0)
            assert records_size(stack, "blue") + records_size(stack, "green") == copies  # no more pairs
        print(f"\n{phase}, controller {signal_.name}: users answered by v1.1.0 until {exposed:.1f} s after it; "
              f"{len(answers.failures)} failed requests")
        assert exposed <= lease + 1.5
        assert answers.failures == []
        assert stack.front_color() == "blue"
        if signal_ is signal.SIGSTOP:  # resumed, the deploy sees the lapse and ends its rollout
            os.kill(deploy.pid, signal.SIGCONT)
            out, err = deploy.communicate(timeout=60)
            assert deploy.returncode == 1 and "lease lapsed" in err, out + err
            assert stack.status()["phase"] == "aborted"
        else:
            deploy.wait()
            up = stack.cli("up").stdout
            assert "its canary share went back to 0%" in up
        assert stack.front_color() == "blue"
        assert stack.status()["active"] == "blue"


# -- 13. the whole stack killed at once: nginx's master, both gunicorn masters, a canary's deploy --
def test_up_after_a_whole_stack_crash_stops_its_own_orphaned_workers_and_starts_everything_in_one_go(
        models_dir, tmp_path):
    with Stack(tmp_path, models_dir, UNDECIDED) as stack:
        deploy = stack.popen("deploy", "v1.1.0", "--canary", "10,100", "--step-seconds", "120")
        wait_until(lambda: rollout_phase(stack) == "canary", 60, what="the canary step")
        masters = [stack.status()["nginx_pid"]] + [
            int((stack.run_dir / f"{color}-{port}.pid").read_text())
            for color, port in (("blue", stack.blue_port), ("green", stack.green_port))]
        workers = [pid for color in ("blue", "green") for pid in stack.gunicorn_pids(color) if pid not in masters]
        for pid in workers:  # stopped, so that they hold the ports as long as under load (12-18 s)
            os.kill(pid, signal.SIGSTOP)
        for pid in [*masters, deploy.pid]:
            os.kill(pid, signal.SIGKILL)
        deploy.wait()
        assert workers and all(pid in pids_matching("gunicorn") for pid in workers)  # orphaned, holding the ports

        up = stack.cli("up", check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "repaired: stopped gunicorn processes left by a killed master or command: pid " in up.stdout
        assert "its canary share went back to 0%" in up.stdout
        assert "repaired: stopped nginx processes no master owned" in up.stdout
        assert not set(workers) & set(pids_matching("gunicorn"))
        answer = requests.post(stack.front + "/predict", json={"x": [5.1, 3.5, 1.4, 0.2]}, timeout=5).json()
        assert (answer["color"], answer["version"]) == ("blue", "v1.0.0")
        assert not list((stack.run_dir / "nginx" / "canary").glob("green-b*"))
        status = stack.status()
        assert status["phase"] == "aborted" and all(c["state"] == "up" for c in status["colors"].values())


# -- 14. the run directory's disk fills during a bake -----------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs as the run directory (the test is skipped where mounting is not allowed)."""
    run = tmp_path / "run"
    run.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(run)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield run
    subprocess.run(["umount", "-l", str(run)], check=True)


def test_a_disk_that_fills_during_the_bake_leaves_history_and_state_agreeing(models_dir, tmp_path, small_disk):
    with Stack(tmp_path, models_dir, LONG_BAKE + "[switch]\nlock_timeout = 3.0\n") as stack:
        with Traffic(stack.front, clients=4) as traffic:
            deploy = stack.popen("deploy", "v1.1.0")
            wait_until(lambda: rollout_phase(stack) == "baking", 60, what="the bake")
            subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k"], capture_output=True)
            out, err = deploy.communicate(timeout=120)
            time.sleep(11.0)  # the deploy's lease, had it kept one, lapses
        assert deploy.returncode == 1, out + err
        assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in out + err
        state = json.loads((stack.run_dir / "state.json").read_text())
        history = stack.history()
        rollout = state["rollout"]
        claims = [e["outcome"] for e in history if e["action"] == "deploy" and e.get("rollout") == rollout["id"]]
        assert claims in ([], [rollout["phase"]]), (claims, rollout["phase"])
        moves = [e for e in history if e.get("to") in ("blue", "green") and e["outcome"] in ("succeeded", "repaired")]
        assert moves[-1]["to"] == state["active"]
        assert stack.status()["active"] == "blue"  # users are on the stable version, whatever the record could say
        (small_disk / "filler").unlink()
        repaired = stack.cli("reconcile")
        status = stack.status()
        assert (status["active"], status["recorded_active"], status["phase"]) == ("blue", "blue", "aborted"), \
            repaired.stdout
        print(f"\nthe disk filled during the bake: {traffic.sent} requests, {len(traffic.failures)} failed; "
              f"the deploy said: {err.strip()}")


# -- 15. a reload under keep-alive load -------------------------------------------------------
def test_a_reload_under_keep_alive_load_says_it_may_reset_idle_connections(stack):
    original = stack.config.read_text()
    results = []
    try:
        with Traffic(stack.front, clients=4) as traffic:
            for i in range(3):
                stack.config.write_text(original.replace("[nginx]\n", f'[nginx]\nsend_timeout = "{11 + i}s"\n'))
                results.append(stack.cli("reload"))
                time.sleep(0.5)
    finally:
        stack.config.write_text(original)
    print(f"\n3 reloads under 4 keep-alive clients: {traffic.sent} requests, {len(traffic.failures)} failed "
          f"{traffic.failures[:3]}")
    for result in results:
        assert result.stdout == "nginx config replaced and reloaded; the front door serves it\n"
        assert result.stderr == ("bluegreen: note: a reload closes idle keep-alive client connections; a client that "
                                 "reuses one at that instant may see it reset (most clients do not send a POST "
                                 "again): docs/PERFORMANCE.md, \"Reloads\"\n")
    assert not [f for f in traffic.failures if f.startswith("HTTP")]  # at most a connection reset, never an error
