"""The container flow end to end (`make test-containers`): real engine, real images, real containers.

Runs README "Docker compose" line by line (``README_LINES``; tests/platform checks that the
README shows exactly these), on loopback only: a Docker engine (the one `docker` reaches,
or a private one), the base images (pulled, or stand-ins built from Debian packages), the
project's image, then blue, green and nginx as containers from the repo's compose files
(with their host-network overrides), driven by the `bluegreen` controller through the
commands runtime: up, the seed client through the front door, a gated deploy baked under
load with labelled feedback, a switch under keep-alive load, a rollback, down. Every
container it started and the engine it started are stopped at the end, also after a
failure or a TERM/INT/HUP.

The colors get a fresh FEEDBACK_TOKEN and METRICS_TOKEN (random, in the environment of
this run only); free ports and a run directory of its own (.run/containers) keep it
apart from a local stack (the README shows the default ports). It prints what it
measured (time per step, image sizes, requests sent and failed under load) and exits
non-zero when any step fails or any request under load fails.

Usage: .venv/bin/python tests/containers/container_flow.py [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from utils.local_stack import ClientThreads, free_ports  # noqa: E402

IMAGE = "bluegreen-model-server:latest"
IMAGE_BUDGET_BYTES = 350_000_000
CONFIG = "deploy/bluegreen.docker-local.toml"
BG = f".venv/bin/bluegreen --config {CONFIG}"
COMPOSE_PROJECTS = ("bluegreen-blue", "bluegreen-green", "bluegreen-nginx")
ENGINE_DIR = Path(os.environ.get("BLUEGREEN_DOCKER_DIR") or ROOT / ".run" / "docker").resolve()
ROW = [5.9, 3.0, 5.1, 1.8]
TOKEN_COMMAND = "$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"

# What the flow exports before the first step: README "Docker compose" shows these values;
# the flow picks free ports and random tokens instead.
EXPORTS = {
    "BLUEGREEN_RUN_DIR": ".run/containers",
    "BLUEGREEN_PORT": "8080",
    "BLUEGREEN_PREVIEW_PORT": "8081",
    "BLUEGREEN_BLUE_PORT": "8001",
    "BLUEGREEN_GREEN_PORT": "8002",
    "FEEDBACK_TOKEN": f'"{TOKEN_COMMAND}"',
    "METRICS_TOKEN": f'"{TOKEN_COMMAND}"',
}
# The steps, in order; `eval "$(...)"` lines put the printed exports into the environment.
STEPS = {
    "engine": "contrib/docker_engine.sh start",
    "engine env": 'eval "$(contrib/docker_engine.sh env)"',
    "images": "contrib/docker_images.sh",
    "images env": 'eval "$(contrib/docker_images.sh env)"',
    "up": f"{BG} up",
    "seed client": "utils/test_req.sh 127.0.0.1:$BLUEGREEN_PORT",
    "deploy": f"{BG} deploy v1.1.0",
    "switch": f"{BG} switch blue",
    "rollback": f"{BG} rollback",
    "down": f"{BG} down",
    "engine stop": "contrib/docker_engine.sh stop",
}
# How long each step may take (the cold path installs packages and builds images).
TIMEOUTS = {"engine": 900, "images": 1800}
DEFAULT_TIMEOUT = 300


def readme_lines() -> list[str]:
    """The commands of README "Docker compose", in order (``make setup`` first)."""
    exports = [f"export {' '.join(f'{k}={v}' for k, v in EXPORTS.items() if k.startswith('BLUEGREEN_'))}",
               f"export {' '.join(f'{k}={v}' for k, v in EXPORTS.items() if not k.startswith('BLUEGREEN_'))}"]
    return ["make setup", *exports, *STEPS.values()]


class StepFailed(Exception):
    """A step of the flow did not do what it must."""


def exports(text: str) -> dict:
    """``export NAME=value`` lines (what the engine and image scripts print for ``env``)."""
    found = {}
    for line in text.splitlines():
        if not line.startswith("export "):
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        if name and value:
            found[name] = value
    return found


def private_engine_pid() -> int | None:
    """The private dockerd of contrib/docker_engine.sh, when one runs now."""
    try:
        pid = int((ENGINE_DIR / "dockerd.pid").read_text())
        return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd" else None
    except (OSError, ValueError):
        return None


class Flow:
    """The flow's environment, its log and its figures."""

    def __init__(self, log: Path):
        # A local stack's settings must not leak in; the engine's own two may.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("BLUEGREEN_") or k in ("BLUEGREEN_DOCKER_DIR", "BLUEGREEN_PRIVATE_ENGINE")}
        self.log = log
        self.timings: list[tuple[str, float, str]] = []
        self.figures: list[tuple[str, str]] = []

    def run(self, name: str, command: str, *, check: bool = True) -> str:
        """Run one step's command line with bash in the repo; its output goes to the log.

        ``eval "$(X)"`` runs X and puts the ``export`` lines it prints into the environment
        of the steps after it, as the shell would.
        """
        print(f"$ {command}", flush=True)
        timeout = TIMEOUTS.get(name, DEFAULT_TIMEOUT)
        evaluated = command.startswith('eval "$(') and command.endswith(')"')
        began = time.monotonic()
        try:
            result = subprocess.run(["bash", "-c", command[len('eval "$('):-2] if evaluated else command], cwd=ROOT,
                                    env=self.env, capture_output=True, text=True, timeout=timeout)
            code, output = result.returncode, result.stdout + result.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = 124, f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout:g}s"
        took = time.monotonic() - began
        with self.log.open("a") as handle:
            handle.write(f"$ {command}\n{output}\n(exit {code}, {took:.1f}s)\n\n")
        last = (output.strip().splitlines() or [""])[-1]
        self.timings.append((name, took, "ok" if code == 0 else f"exit {code}"))
        print(f"  exit {code} in {took:.1f}s: {last}", flush=True)
        if check and code != 0:
            tail = "\n".join(output.strip().splitlines()[-25:])
            raise StepFailed(f"{name}: `{command}` exited {code}:\n{tail}")
        if evaluated and code == 0:
            self.env.update(exports(result.stdout))
        return output

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=300)
        if check and result.returncode != 0:
            raise StepFailed(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result


class KeepAliveLoad(ClientThreads):
    """Keep-alive clients posting predictions to the front door, and one sending labelled feedback.

    Each prediction client holds one HTTP/1.1 connection and reuses it; any answer but a
    200 with a prediction, and any connection error, is a failed request (the connection
    is then opened again). The feedback client sends the holdout's true labels at a few
    per second (8) with the bearer token, as a labelling client would, so the bake can judge
    live accuracy; its answers are counted the same way.
    """

    def __init__(self, port: int, clients: int, feedback_token: str, labelled: list[tuple[list, str]]):
        self.port = port
        self.token = feedback_token
        self.labelled = labelled
        self.sent = self.failed = self.feedback_sent = self.feedback_failed = 0
        self.failures: list[str] = []
        self.versions: dict[str, int] = {}
        super().__init__(clients)
        self.threads.append(threading.Thread(target=self._feedback, daemon=True))

    def _post(self, conn, path: str, body: dict, headers: dict) -> tuple[http.client.HTTPConnection, str, dict]:
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
            response = conn.getresponse()
            answer = json.loads(response.read() or b"{}")
            return conn, "" if response.status == 200 else f"HTTP {response.status}: {answer}", answer
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if conn is not None:
                conn.close()
            return None, f"{type(exc).__name__}: {exc}", {}

    def _count(self, failure: str, feedback: bool, version: str | None = None) -> None:
        with self.lock:
            if feedback:
                self.feedback_sent += 1
                self.feedback_failed += bool(failure)
            else:
                self.sent += 1
                self.failed += bool(failure)
                if version:
                    self.versions[version] = self.versions.get(version, 0) + 1
            if failure and len(self.failures) < 20:
                self.failures.append(failure)

    def _client(self) -> None:  # one of the prediction clients
        conn = None
        while not self.stop_event.is_set():
            conn, failure, answer = self._post(conn, "/predict", {"x": ROW}, {})
            if not failure and "prediction" not in answer:
                failure = f"no prediction in {answer}"
            self._count(failure, False, answer.get("version"))

    def _feedback(self) -> None:
        conn, i = None, 0
        while not self.stop_event.wait(0.125):  # 8 a second: below nginx's per-client feedback rate (10/s)
            row, label = self.labelled[i % len(self.labelled)]
            i += 1
            conn, failure, _ = self._post(conn, "/feedback", {"x": row, "label": label},
                                          {"Authorization": f"Bearer {self.token}"})
            self._count(failure, True)

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.sent, self.failed


def check_image(flow: Flow) -> None:
    """The runtime image: within budget, non-root, a readiness health check, no scikit-learn, no CA material."""
    info = json.loads(flow.docker("image", "inspect", IMAGE).stdout)[0]
    size = info["Size"]
    if size > IMAGE_BUDGET_BYTES:
        raise StepFailed(f"{IMAGE} is {size / 1e6:.0f} MB, over the {IMAGE_BUDGET_BYTES / 1e6:.0f} MB budget")
    if info["Config"].get("User") != "10001":
        raise StepFailed(f"{IMAGE} runs as {info['Config'].get('User')!r}, not the non-root 10001")
    if "/ready" not in " ".join((info["Config"].get("Healthcheck") or {}).get("Test") or []):
        raise StepFailed(f"{IMAGE} has no health check on /ready")
    imports = flow.docker("run", "--rm", "--network", "none", IMAGE, "python", "-c",
                          "import importlib.util as u; print([m for m in ('sklearn', 'scipy', 'skl2onnx', 'onnx', "
                          "'pip') if u.find_spec(m)])")
    if imports.stdout.strip() != "[]":
        raise StepFailed(f"{IMAGE} carries what only training needs: {imports.stdout.strip()}")
    check_no_local_ca(flow)


def check_no_local_ca(flow: Flow) -> None:
    """No line of this machine's extra CA certificates is in any layer of the image."""
    ca_dir = Path(os.environ.get("LOCAL_CA_DIR", "/usr/local/share/ca-certificates"))
    needles = [line.strip().encode() for path in sorted(ca_dir.glob("*.crt"))
               for line in path.read_text().splitlines()[1:3] if len(line.strip()) > 40]
    if not needles:
        return
    saved = subprocess.Popen(["docker", "save", IMAGE], cwd=ROOT, env=flow.env, stdout=subprocess.PIPE)
    tail, found = b"", []
    for block in iter(lambda: saved.stdout.read(1 << 20), b""):
        window = tail + block
        found += [n for n in needles if n in window]
        tail = window[-200:]
    saved.wait()
    if saved.returncode != 0:
        raise StepFailed("docker save failed: cannot check the image for CA material")
    if found:
        raise StepFailed(f"{IMAGE} contains this machine's CA certificates ({len(found)} lines found)")


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        try:
            return response.status, dict(response.headers), json.loads(body)
        except ValueError:
            return response.status, dict(response.headers), {"text": body.decode(errors="replace")}
    finally:
        conn.close()


def check_colors(flow: Flow, ports: dict, metrics_token: str) -> None:
    """Both colors serve their version through ONNX; /metrics needs its token and is not behind the doors."""
    for color, version in (("blue", "v1.0.0"), ("green", "v1.1.0")):
        status, _, health = get(ports[color], "/health")
        if status != 200 or health.get("version") != version or health.get("predictor", {}).get("path") != "onnx":
            raise StepFailed(f"{color} answers {status} {health}: expected {version} served by onnx")
    if get(ports["blue"], "/metrics")[0] != 401:
        raise StepFailed("a color's /metrics answered without the METRICS_TOKEN")
    if get(ports["blue"], "/metrics", {"Authorization": f"Bearer {metrics_token}"})[0] != 200:
        raise StepFailed("a color's /metrics refused its METRICS_TOKEN")
    for door in ("front", "preview"):
        status, _, body = get(ports[door], "/metrics", {"Authorization": f"Bearer {metrics_token}"})
        if status != 404 or body.get("status") != 404:
            raise StepFailed(f"the {door} door answered /metrics with {status} {body}: it must not proxy it")


def front_color(port: int) -> str:
    return get(port, "/ready")[1].get("X-Color", "")


def under_load(flow: Flow, load: KeepAliveLoad, name: str, command: str, settle: float = 2.0) -> None:
    """Run a controller step while ``load`` runs; record the requests sent and failed around it."""
    before_sent, before_failed = load.snapshot()
    time.sleep(settle)
    flow.run(name, command)
    time.sleep(settle)
    sent, failed = load.snapshot()
    flow.figures.append((f"{name} under keep-alive load: requests sent / failed",
                         f"{sent - before_sent} / {failed - before_failed}"))
    if failed - before_failed:
        raise StepFailed(f"{name}: {failed - before_failed} of {sent - before_sent} requests failed: "
                         f"{load.failures[:5]}")


def teardown(flow: Flow, started_up: bool, engine_was_running: bool, problems: list[str]) -> None:
    """down (when up ran), every container of the flow's compose projects, then the engine
    (when this run started it; a reused engine, or one that ran before, is left running)."""
    if started_up:
        try:
            flow.run("down", STEPS["down"])
        except StepFailed as exc:
            problems.append(str(exc))
    for project in COMPOSE_PROJECTS:
        left = flow.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}", check=False)
        if left.stdout.strip():
            problems.append(f"containers of {project} were still there after down: removed")
            flow.docker("rm", "-f", *left.stdout.split(), check=False)
    if private_engine_pid() is None or engine_was_running:
        return
    # Images left without a tag by a rebuild; the tagged images and the build cache stay for the warm path.
    flow.docker("image", "prune", "--force", check=False)
    try:
        flow.run("engine stop", STEPS["engine stop"])
    except StepFailed as exc:
        problems.append(str(exc))


def image_sizes(flow: Flow) -> None:
    for what, image in (("runtime image", IMAGE), ("python base", flow.env.get("PYTHON_IMAGE", "")),
                        ("nginx base", flow.env.get("NGINX_IMAGE", ""))):
        size = flow.docker("image", "inspect", "--format", "{{.Size}}", image, check=False).stdout.strip()
        if size.isdigit():
            flow.figures.append((f"{what} {image} (docker image inspect)", f"{int(size) / 1e6:.0f} MB"))


def check_compose_files(flow: Flow) -> None:
    """docker compose itself reads every shipped file and every override as the flow uses them."""
    for color in ("blue", "green", "nginx"):
        shipped, override = f"docker-compose.{color}.yml", f"docker-compose.{color}.host.yml"
        for files in ([shipped], [shipped, override]):
            args = [arg for name in files for arg in ("-f", name)]
            result = subprocess.run(["docker", "compose", *args, "config", "--quiet"], cwd=ROOT, env=flow.env,
                                    capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                raise StepFailed(f"docker compose {' '.join(args)} config: {result.stderr.strip()}")


def check_containers(flow: Flow) -> None:
    """Each color and nginx run as a container of its compose project; the colors' health checks pass."""
    for project, service in zip(COMPOSE_PROJECTS, ("blue", "green", "nginx")):
        listed = flow.docker("ps", "--filter", f"label=com.docker.compose.project={project}",
                             "--format", "{{.Image}}|{{.Status}}").stdout.split("\n")
        listed = [line for line in listed if line]
        if len(listed) != 1:
            raise StepFailed(f"{project}: expected one running container, found {listed}")
        image, status = listed[0].split("|", 1)
        if service != "nginx" and (image != IMAGE or "(healthy)" not in status):
            raise StepFailed(f"{project}: {image} is {status!r}, expected {IMAGE} and healthy")
        flow.figures.append((f"container of {project}", f"{image}, {status}"))


def labelled_rows() -> list[tuple[list, str]]:
    reference = json.loads((ROOT / "models" / "iris_model_v1.1.0.json").read_text())["reference"]
    return list(zip(reference["rows"], reference["labels"]))


class Interrupted(StepFailed):
    """TERM, INT or HUP arrived: tear down, then fail."""


def interrupt(signum, frame):
    raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="keep-alive prediction clients during the load steps")
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, interrupt)
    report_dir = ROOT / "reports" / "containers"
    report_dir.mkdir(parents=True, exist_ok=True)
    log = report_dir / "flow.log"
    log.write_text("")
    flow = Flow(log)
    run_dir = ROOT / EXPORTS["BLUEGREEN_RUN_DIR"]
    shutil.rmtree(run_dir, ignore_errors=True)
    front, preview, blue, green = free_ports(4)
    ports = {"front": front, "preview": preview, "blue": blue, "green": green}
    feedback_token, metrics_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    flow.env.update(BLUEGREEN_RUN_DIR=str(run_dir), BLUEGREEN_PORT=str(front), BLUEGREEN_PREVIEW_PORT=str(preview),
                    BLUEGREEN_BLUE_PORT=str(blue), BLUEGREEN_GREEN_PORT=str(green),
                    FEEDBACK_TOKEN=feedback_token, METRICS_TOKEN=metrics_token)
    assert set(EXPORTS) <= set(flow.env)
    engine_was_running = private_engine_pid() is not None
    fresh_data_root = not (ENGINE_DIR / "data").exists()
    began = time.monotonic()
    problems: list[str] = []
    started_up = False
    try:
        flow.run("engine", STEPS["engine"])
        flow.run("engine env", STEPS["engine env"])
        busy = [p for p in COMPOSE_PROJECTS
                if flow.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={p}").stdout.strip()]
        if busy:
            raise StepFailed(f"this engine already runs {', '.join(busy)}: stop that stack first "
                             "(the flow would replace its containers)")
        flow.run("images", STEPS["images"])
        flow.run("images env", STEPS["images env"])
        image_sizes(flow)
        check_image(flow)
        check_compose_files(flow)
        started_up = True
        flow.run("up", STEPS["up"])
        check_containers(flow)
        if front_color(front) != "blue":
            raise StepFailed("after up the front door is not answered by blue")
        check_colors(flow, ports, metrics_token)
        flow.run("seed client", STEPS["seed client"])
        with KeepAliveLoad(front, args.clients, feedback_token, labelled_rows()) as load:
            under_load(flow, load, "deploy", STEPS["deploy"])
            if front_color(front) != "green":
                raise StepFailed("after the deploy the front door is not answered by green")
            under_load(flow, load, "switch", STEPS["switch"])
            if front_color(front) != "blue":
                raise StepFailed("after the switch the front door is not answered by blue")
            under_load(flow, load, "rollback", STEPS["rollback"])
            if front_color(front) != "green":
                raise StepFailed("after the rollback the front door is not answered by green")
        flow.figures.append(("whole load: predictions sent / failed", f"{load.sent} / {load.failed}"))
        flow.figures.append(("whole load: labelled feedback sent / failed",
                             f"{load.feedback_sent} / {load.feedback_failed}"))
        answered = ", ".join(f"{v}: {n}" for v, n in sorted(load.versions.items()))
        flow.figures.append(("versions that answered", answered))
        if load.feedback_failed:
            raise StepFailed(f"{load.feedback_failed} feedback requests failed: {load.failures[:5]}")
        if set(load.versions) != {"v1.0.0", "v1.1.0"}:
            raise StepFailed(f"expected both versions to answer under load, saw {load.versions}")
        check_history(flow)
    except StepFailed as exc:
        problems.append(str(exc))
    finally:
        # Also after a failed engine start (it may have half started) or a signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        teardown(flow, started_up, engine_was_running, problems)
    total = time.monotonic() - began
    print("\n| step | seconds | outcome |\n|---|---|---|")
    for name, took, outcome in flow.timings:
        print(f"| {name} | {took:.1f} | {outcome} |")
    kind = "cold: a new engine data root" if fresh_data_root else "warm: the data root of an earlier run"
    print(f"| whole flow ({kind}) | {total:.1f} | {'ok' if not problems else 'FAILED'} |")
    print("\n| what | figure |\n|---|---|")
    for name, figure in flow.figures:
        print(f"| {name} | {figure} |")
    print(f"\nlog: {log.relative_to(ROOT)}; controller record: {run_dir.relative_to(ROOT)}")
    if problems:
        print("\nFAILED:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


def check_history(flow: Flow) -> None:
    """The deploy was promoted after a bake that judged labels; the switch and the rollback are recorded."""
    result = subprocess.run(["bash", "-c", f"{BG} history --json"], cwd=ROOT, env=flow.env, capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise StepFailed(f"history: {result.stderr.strip()}")
    history = json.loads(result.stdout)
    deploys = [e for e in history if e.get("action") == "deploy"]
    if not deploys or deploys[-1].get("outcome") != "promoted":
        raise StepFailed(f"the history has no promoted deploy: {deploys[-1:]}")
    numbers = deploys[-1].get("bake", {}).get("numbers", {})
    flow.figures.append(("deploy bake: requests / labelled feedback judged",
                         f"{numbers.get('requests')} / {numbers.get('labelled')}"))
    if not numbers.get("labelled"):
        raise StepFailed(f"the bake was promoted without judging labelled feedback: {numbers}")
    actions = [e.get("action") for e in history]
    if "switch" not in actions or "rollback" not in actions:
        raise StepFailed(f"the history lacks the switch or the rollback: {actions}")


if __name__ == "__main__":
    sys.exit(main())
