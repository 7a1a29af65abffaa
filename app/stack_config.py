"""Controller configuration: defaults, then a TOML file, then environment overrides.

``bluegreen.toml`` in the working directory is read when present, ``--config FILE``
otherwise. Environment overrides (for ports and the run directory):
``BLUEGREEN_RUN_DIR``, ``BLUEGREEN_PORT`` (front door), ``BLUEGREEN_PREVIEW_PORT``,
``BLUEGREEN_BLUE_PORT``, ``BLUEGREEN_GREEN_PORT``, ``BLUEGREEN_HOST`` (default 127.0.0.1).
"""

from __future__ import annotations

import copy
import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from app.errors import ControllerError

ROOT = Path(__file__).resolve().parent.parent
COLORS = ("blue", "green")

DEFAULTS: dict = {
    "run_dir": ".run",
    "models_dir": str(ROOT / "models"),
    "host": "127.0.0.1",
    "nginx": {
        "binary": "",
        "template": str(ROOT / "nginx" / "nginx.conf.j2"),
        "port": 8080,
        "preview_port": 8081,
        "client_max_body_size": "1m",
        "upstream_keepalive": 32,
        "upstream_keepalive_timeout": "4s",
        "fail_timeout": "2s",
        "proxy_connect_timeout": "1s",
        "proxy_read_timeout": "30s",
        # Where nginx sees its files and which address it listens on, when it does not run
        # here (a container mounting <run_dir>/nginx); empty: the local paths and `host`.
        "proxy_dir": "",
        "listen_host": "",
    },
    # `servers`: the upstream addresses nginx uses (default: host:port for each port);
    # `probe`: the addresses the controller checks (default: the same).
    "colors": {
        "blue": {"ports": [8001], "version": "v1.0.0", "servers": [], "probe": []},
        "green": {"ports": [8002], "version": "v1.1.0", "servers": [], "probe": []},
    },
    "gunicorn": {"workers": 2, "threads": 4, "start_timeout": 60.0, "stop_timeout": 30.0},
    # front_url / preview_url: where the controller verifies a switch and runs the smoke
    # evaluation (default: http://host:nginx.port and http://host:nginx.preview_port).
    "switch": {"verify_timeout": 5.0, "verify_responses": 3, "lock_timeout": 30.0, "front_url": "",
               "preview_url": ""},
    # Pre-promotion gates (docs/adr/0004-gated-deploys.md).
    "gates": {
        "min_accuracy": 0.90,
        "min_f1_score": 0.90,
        "max_metric_drop": 0.05,
        "smoke_max_latency_ms": 250.0,
    },
    # Post-promotion bake and `watch`.
    "bake": {
        "period": 30.0,
        "interval": 2.0,
        "failure_limit": 2,
        "max_error_rate": 0.01,
        "min_live_accuracy": 0.80,
        "min_labelled": 20,
        "scale_down_delay": 0.0,
    },
    # "local" runs gunicorn and nginx here; "commands" runs the commands below instead
    # (docker compose, kubectl, ...), with $color, $version and $conf substituted.
    "runtime": {
        "kind": "local",
        "commands": {
            "start_color": "", "stop_color": "",
            "proxy_start": "", "proxy_stop": "", "proxy_test": "", "proxy_reload": "",
            "route": "", "routed": "",
        },
        "command_timeout": 300.0,
        "workdir": ".",
    },
}

ENV_OVERRIDES = {
    "BLUEGREEN_PORT": ("nginx", "port"),
    "BLUEGREEN_PREVIEW_PORT": ("nginx", "preview_port"),
}


def _merge(base: dict, extra: dict, where: str = "") -> dict:
    for key, value in extra.items():
        if key not in base:
            raise ControllerError(f"config: unknown setting {where + '.' if where else ''}{key}")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{where}.{key}" if where else key)
        else:
            base[key] = value
    return base


@dataclass
class StackConfig:
    """The whole controller configuration, resolved to absolute paths."""

    data: dict
    source: str

    @property
    def run_dir(self) -> Path:
        return Path(self.data["run_dir"]).resolve()

    @property
    def models_dir(self) -> Path:
        return Path(self.data["models_dir"]).resolve()

    @property
    def host(self) -> str:
        return self.data["host"]

    @property
    def nginx(self) -> dict:
        return self.data["nginx"]

    def servers(self, color: str) -> list[str]:
        """Upstream addresses of ``color`` as nginx reaches them."""
        spec = self.data["colors"][color]
        return list(spec["servers"]) or [f"{self.host}:{port}" for port in spec["ports"]]

    def probe_addresses(self, color: str) -> list[str]:
        """Addresses the controller checks ``color`` on."""
        spec = self.data["colors"][color]
        return list(spec["probe"]) or self.servers(color)

    def front_url(self) -> str:
        return self.data["switch"]["front_url"] or f"http://{self.host}:{self.nginx['port']}"

    def preview_url(self) -> str:
        return self.data["switch"]["preview_url"] or f"http://{self.host}:{self.nginx['preview_port']}"

    def section(self, name: str) -> dict:
        return self.data[name]

    def nginx_binary(self) -> str:
        binary = self.nginx["binary"] or shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists() and not shutil.which(binary):
            raise ControllerError(f"nginx not found ({binary}): install it (make nginx) or set nginx.binary")
        return binary


def load_config(path: str | None = None, environ=None) -> StackConfig:
    """Read the configuration; a bad file or value is a ControllerError naming it."""
    environ = os.environ if environ is None else environ
    data = copy.deepcopy(DEFAULTS)
    source = "defaults"
    if path is None and Path("bluegreen.toml").is_file():
        path = "bluegreen.toml"
    if path is not None:
        try:
            with open(path, "rb") as handle:
                _merge(data, tomllib.load(handle))
        except FileNotFoundError:
            raise ControllerError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ControllerError(f"config file {path}: invalid TOML ({exc})") from None
        source = str(path)
        base = Path(path).resolve().parent
        for key in ("run_dir", "models_dir"):
            data[key] = str(base / data[key])
        data["runtime"]["workdir"] = str(base / data["runtime"]["workdir"])
    if environ.get("BLUEGREEN_RUN_DIR"):
        data["run_dir"] = environ["BLUEGREEN_RUN_DIR"]
    if environ.get("BLUEGREEN_HOST"):
        data["host"] = environ["BLUEGREEN_HOST"]
    try:
        for name, (section, key) in ENV_OVERRIDES.items():
            if environ.get(name):
                data[section][key] = int(environ[name])
        for color in COLORS:
            name = f"BLUEGREEN_{color.upper()}_PORT"
            if environ.get(name):
                data["colors"][color]["ports"] = [int(p) for p in environ[name].split(",")]
    except ValueError as exc:
        raise ControllerError(f"environment: a port must be a number ({exc})") from None
    _validate(data)
    return StackConfig(data=data, source=source)


def _validate(data: dict) -> None:
    if set(data["colors"]) != set(COLORS):
        raise ControllerError(f"config: colors must be exactly {list(COLORS)}, got {sorted(data['colors'])}")
    ports = [data["nginx"]["port"], data["nginx"]["preview_port"]]
    for color in COLORS:
        spec = data["colors"][color]
        if not spec.get("ports"):
            raise ControllerError(f"config: colors.{color}.ports must list at least one port")
        ports += spec["ports"]
    if len(set(ports)) != len(ports):
        raise ControllerError(f"config: ports must all differ, got {ports}")
    if data["runtime"]["kind"] not in ("local", "commands"):
        raise ControllerError(f"config: runtime.kind must be 'local' or 'commands', not {data['runtime']['kind']!r}")
