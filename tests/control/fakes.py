"""A fake world for reconciler tests: colors, a front door and a clock, all in memory.

In the style of argo-rollouts' tests with fake clients: the controller's own logic
(gates, switch verification, state, history, bake) runs for real against a ``World``
that plays the runtime, the proxy, the doors and the clock. Time only moves when the
controller sleeps; traffic arrives on the routed color as time moves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from app.artifacts.versions import sklearn_version
from app.control.config import load_config
from app.control.context import Context
from app.control.controller import Controller
from app.control.probes import ServerProbe
from app.control.rollout import SmokeAnswer
from app.control.store import StateStore
from app.errors import ControllerError

CLASSES = ["setosa", "versicolor", "virginica"]


def write_card(models_dir: Path, version: str, accuracy: float = 0.95, rows: int = 20) -> dict:
    """A model card (and a stand-in artifact with its checksum) whose holdout answers give ``accuracy``."""
    models_dir.mkdir(parents=True, exist_ok=True)
    artifact = models_dir / f"iris_model_{version}.joblib"
    artifact.write_bytes(f"stand-in artifact of {version}".encode())
    labels = [CLASSES[i % 3] for i in range(rows)]
    wrong = round(rows * (1 - accuracy))
    answers = [CLASSES[(i + 1) % 3] if i < wrong else labels[i] for i in range(rows)]
    card = {
        "version": version, "algorithm": "Stand-in", "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        "sklearn_version": sklearn_version(), "feature_names": ["a", "b", "c", "d"], "class_names": CLASSES,
        "metrics": {"accuracy": (rows - wrong) / rows, "f1_score": (rows - wrong) / rows,
                    "precision": (rows - wrong) / rows, "recall": (rows - wrong) / rows},
        "reference": {"rows": [[float(i), 0.0, 0.0, 0.0] for i in range(rows)], "labels": labels,
                      "probabilities": [[1.0 if c == a else 0.0 for c in CLASSES] for a in answers]},
    }
    (models_dir / f"iris_model_{version}.json").write_text(json.dumps(card))
    return card


@dataclass
class FakeColor:
    """One color's servers as the world runs them."""

    version: str | None = None          # None: not running
    ready: bool = True
    silent_probes: int = 0               # this many probes get no answer (a frozen process), then it answers
    requests: float = 0
    server_errors: float = 0
    labelled: int = 0
    correct: int = 0
    failovers: int = 0                   # requests answered here that were meant for the other color


@dataclass
class World:
    """Everything outside the controller, in memory."""

    models_dir: Path
    colors: dict[str, FakeColor] = field(default_factory=lambda: {"blue": FakeColor(), "green": FakeColor()})
    routed: str = "blue"
    proxy_running: bool = False
    config_text: str = ""               # the live config file
    loaded_text: str = ""               # what the running proxy serves
    settings_generation: str = "000000000001"
    reload_ignored: bool = False        # a reload that nginx does not apply (a port taken, say)
    misrouting_generation: str = ""     # a config whose front door answers nobody (it lost the route)
    now: float = 0.0
    traffic: float = 0.0                # requests per second reaching the routed color
    error_rate: float = 0.0             # share of them answered with a 5xx
    front_answers: bool = True          # False: the front door answers nobody (a broken route)
    fail_start: set[str] = field(default_factory=set)
    on_start: object = None             # called before a color starts (to act while a deploy holds the lock)
    log: list[str] = field(default_factory=list)
    at: list[tuple[float, object]] = field(default_factory=list)   # (time, action) scheduled faults
    canary: tuple[str, int] | None = None   # (color, percent) a canary sends to the idle color
    mirror_percent: int = 0                 # the share of /predict a shadow mirrors
    version_error_rates: dict[str, float] = field(default_factory=dict)  # a version's own 5xx share
    # The share of inputs on which a version predicts another class than the others do.
    version_disagreement: dict[str, float] = field(default_factory=dict)
    kept: dict[str, list[dict]] = field(default_factory=lambda: {"blue": [], "green": []})  # /records
    sent: int = 0                           # requests that reached a color (their ids)
    probation: str | None = None            # routed to, it serves only while a lease lives
    lease_until: float | None = None        # the lease, as the controller last renewed it
    lease_lapsed: bool = False              # a test's stand-in for a lease nobody renewed in time

    # -- runtime ------------------------------------------------------------------------------
    def start_color(self, color: str, version: str) -> None:
        self.log.append(f"start {color} {version}")
        if self.on_start:
            self.on_start(self)
        if color in self.fail_start:
            raise ControllerError(f"{color} did not start: simulated failure")
        self.colors[color] = FakeColor(version)

    def stop_color(self, color: str) -> None:
        self.log.append(f"stop {color}")
        self.colors[color] = FakeColor()

    def probe_color(self, color: str) -> list[ServerProbe]:
        c = self.colors[color]
        address = f"{color}:8080"
        if c.version is None:
            return [ServerProbe(address, None, False, None, "connection refused")]
        if c.silent_probes:
            c.silent_probes -= 1
            return [ServerProbe(address, 4242, False, None, "timed out", timed_out=True)]
        live = {"requests": int(c.requests), "server_errors": int(c.server_errors), "labelled": c.labelled,
                "correct": c.correct, "failovers": c.failovers, "since": "2026-01-01T00:00:00Z",
                "accuracy": c.correct / c.labelled if c.labelled else None}
        return [ServerProbe(address, 4242, c.ready, {"status": "ok", "version": c.version, "live": live})]

    # -- proxy --------------------------------------------------------------------------------
    def render(self) -> str:
        return f"# Config generation {self.settings_generation}\nrendered config\n"

    def apply(self, text: str) -> bool:
        changed, self.config_text = self.config_text != text, text
        return changed

    def live_config(self) -> str | None:
        return self.config_text or None

    def reload(self) -> None:
        self.log.append("reload")
        if not self.reload_ignored:
            self.loaded_text = self.config_text

    def start(self) -> None:
        if not self.proxy_running:
            self.log.append("proxy start")
            self.loaded_text = self.config_text
        self.proxy_running = True

    def serves_generations(self) -> bool:
        return True

    def complaint(self) -> str:
        return "bind() to 127.0.0.1:8080 failed (98: Address already in use)" if self.reload_ignored else ""

    def cleanup(self) -> list[str]:
        return []

    def leftovers(self) -> list[str]:
        return ["port 8080 (pid 77: nginx: worker process)"] if self.proxy_running else []

    def stop(self) -> None:
        self.proxy_running = False

    def route(self, color: str) -> None:
        self.log.append(f"route {color}")
        self.routed = color

    def routed_color(self) -> str:
        if self.probation == self.routed and not self.leased():
            return "green" if self.routed == "blue" else "blue"
        return self.routed

    def set_probation(self, color: str | None) -> None:
        self.probation = color

    def on_probation(self) -> str | None:
        return self.probation

    def lease(self, until: float | None) -> None:
        self.lease_until = until

    def leased(self) -> bool:
        return self.lease_until is not None and not self.lease_lapsed

    def split(self, color: str, percent: int, sticky: bool = False) -> None:
        self.log.append(f"split {color} {percent}%" + (" sticky" if sticky else ""))
        self.canary = (color, percent) if percent else None

    def split_share(self) -> tuple[str, int]:
        idle = "green" if self.routed == "blue" else "blue"
        return (idle, self.canary[1]) if self.canary and self.canary[0] == idle else (idle, 0)

    def mirror(self, percent: int, leased: bool = False) -> None:
        self.log.append(f"mirror {percent}%")
        self.mirror_percent = percent

    def mirrored(self) -> int:
        return self.mirror_percent

    def buckets(self) -> bool:
        return True

    def canary_mark(self) -> int | None:
        return None  # no proxy log: the canary counts from the colors' own figures

    def canary_requests(self, color: str, mark: int) -> int | None:
        return None

    def down_reason(self) -> str:
        return "" if self.proxy_running else "nginx is not running (run `bluegreen up`)"

    def pid(self) -> int | None:
        return 4141 if self.proxy_running else None

    # -- doors --------------------------------------------------------------------------------
    def front_generation(self) -> str:
        if not self.proxy_running:
            return "connection refused"
        return next((line.split()[3] for line in self.loaded_text.splitlines()
                     if line.startswith("# Config generation")), "HTTP 404")

    def front_color(self, generation: str | None = None) -> str:
        if generation and self.front_generation() != generation:
            return f"config generation {self.front_generation()}"
        routed = self.routed_color()
        color = self.colors[routed]
        misrouted = self.misrouting_generation and self.misrouting_generation in self.loaded_text
        if not self.proxy_running or not self.front_answers or misrouted or color.version is None:
            return "HTTP 502"
        return routed

    def smoke(self, rows, labels) -> list[SmokeAnswer]:
        idle = "green" if self.routed == "blue" else "blue"
        version = self.colors[idle].version
        if version is None:
            return [SmokeAnswer(label, None, error="connection refused") for label in labels]
        card = json.loads((self.models_dir / f"iris_model_{version}.json").read_text())
        by_row = {tuple(r): CLASSES[p.index(max(p))] for r, p in zip(card["reference"]["rows"],
                                                                    card["reference"]["probabilities"])}
        return [SmokeAnswer(label, 200, by_row.get(tuple(row)), version, 2.0) for row, label in zip(rows, labels)]

    # -- clock --------------------------------------------------------------------------------
    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        idle, share = self.split_share()
        share = share if self.leased() else 0  # a canary's share lives with the lease
        for name, part in ((self.routed_color(), 1 - share / 100), (idle, share / 100)):
            color = self.colors[name]
            if color.version is not None and self.proxy_running and part:
                before = int(color.requests)
                color.requests += self.traffic * seconds * part
                rate = self.version_error_rates.get(color.version, self.error_rate)
                color.server_errors += self.traffic * seconds * part * rate
                for _ in range(int(color.requests) - before):
                    self.answer(name)
        for due, action in [a for a in self.at if a[0] <= self.now]:
            self.at.remove((due, action))
            action(self)

    # -- kept answers (app/server/records.py), for the shadow report and the paired checks -----
    def predict(self, version: str, request: int) -> str:
        """The class ``version`` gives request number ``request``: the versions agree except on
        their ``version_disagreement`` share of the inputs."""
        spread = (request * 0.6180339887) % 1.0
        if spread < self.version_disagreement.get(version, 0.0):
            return CLASSES[(request + 1) % 3]
        return CLASSES[request % 3]

    def status(self, version: str, request: int) -> int:
        rate = self.version_error_rates.get(version, self.error_rate)
        return 500 if (request * 0.7548776662) % 1.0 < rate else 200

    def answer(self, name: str) -> None:
        """One request answered by color ``name``: kept when nginx samples it, and its copy sent
        to the other color (which keeps its answer too) while pairing is on."""
        self.sent += 1
        request = self.sent
        if not self.mirror_percent or (request * 0.3819660113) % 1.0 >= self.mirror_percent / 100:
            return
        other = "green" if name == "blue" else "blue"
        for color, shadow in ((name, False), (other, True)):
            version = self.colors[color].version
            if version is None:
                continue
            status = self.status(version, request)
            self.kept[color].append({"id": f"r{request}", "t": self.time(), "status": status, "version": version,
                                     "shadow": shadow,
                                     "predictions": [self.predict(version, request)] if status == 200 else None})

    def records(self, color: str, cursor: int | None) -> tuple[list[dict], int]:
        kept = self.kept[color]
        return kept[cursor or 0:], len(kept)

    # -- test helpers -------------------------------------------------------------------------
    def label(self, color: str, correct: int, wrong: int) -> None:
        """Feedback arriving on ``color``: ``correct`` right answers and ``wrong`` wrong ones."""
        self.colors[color].labelled += correct + wrong
        self.colors[color].correct += correct


class Colors:
    """The world as the controller's ``Runtime`` (the world itself is the proxy, doors and clock)."""

    def __init__(self, world: World):
        self.world = world
        self.start_color, self.stop_color, self.probe_color = world.start_color, world.stop_color, world.probe_color
        self.records = world.records

    def leftovers(self) -> list[str]:
        return [f"{color}:8080" for color, c in self.world.colors.items() if c.version is not None]

    def cleanup(self) -> list[str]:
        return []


def make_controller(tmp_path: Path, world: World, toml: str = "") -> Controller:
    """A controller over ``world``, with a real config and a real state store in ``tmp_path``."""
    path = tmp_path / "bluegreen.toml"
    path.write_text(f'run_dir = "run"\nmodels_dir = "{world.models_dir}"\n' + toml)
    config = load_config(str(path), environ={})
    lines: list[str] = []
    ctx = Context(config, runtime=Colors(world), proxy=world, doors=world,
                  store=StateStore(config.run_dir, clock=world), clock=world, say=lines.append)
    controller = Controller(ctx)
    controller.lines = lines
    return controller
