"""Controller configuration: typed, and validated when it is loaded.

Defaults (the dataclasses below), then a TOML file (``bluegreen.toml`` in the working
directory when present, or ``--config FILE``), then environment overrides:
``BLUEGREEN_RUN_DIR``, ``BLUEGREEN_HOST`` (default 127.0.0.1), ``BLUEGREEN_PORT`` (front
door), ``BLUEGREEN_PREVIEW_PORT``, ``BLUEGREEN_BLUE_PORT`` and ``BLUEGREEN_GREEN_PORT``
(comma-separated for several replicas), ``BLUEGREEN_DASHBOARD_HOST`` and
``BLUEGREEN_DASHBOARD_PORT`` (`bluegreen dashboard`).

Paths: a relative ``run_dir`` or ``models_dir`` in a config file is read from that file's
folder (without a file, from the working directory); ``models_dir`` defaults to the
project's models folder, wherever the file is.

Every setting has a type. A wrong type, an unknown key, a value out of range, or a rule
that spans settings (nginx must close idle upstream connections before gunicorn does) is
refused when the file is loaded, with one line naming the key: never in the middle of a
deploy.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from app import defaults
from app.artifacts.versions import SHIPPED_VERSIONS, artifact_path, card_path
from app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COLORS = ("blue", "green")


def default_template() -> str:
    """nginx/nginx.conf.j2 of a source checkout, or the copy ``pip install`` puts under the prefix."""
    checkout = ROOT / "nginx" / "nginx.conf.j2"
    return str(checkout if checkout.is_file() else Path(sys.prefix) / "share" / "bluegreen" / "nginx.conf.j2")


def other_color(color: str) -> str:
    return COLORS[1 - COLORS.index(color)]


# -- value checks (each returns "" or what is wrong) ----------------------------------
NGINX_TIME = re.compile(r"^(\d+(ms|s|m|h|d)?)+$")
NGINX_TIME_PART = re.compile(r"(\d+)(ms|s|m|h|d)?")
NGINX_SIZE = re.compile(r"^\d+[kKmMgG]?$")
SECONDS_PER_UNIT = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600, "d": 86400}


def nginx_seconds(value: str) -> float:
    """nginx's time syntax ("500ms", "4s", "1m30s", "10") in seconds."""
    return sum(int(n) * SECONDS_PER_UNIT[unit] for n, unit in NGINX_TIME_PART.findall(value))


def _port(value) -> str:
    return "" if 1 <= value <= 65535 else "must be a TCP port (1-65535)"


def _ports(values) -> str:
    if not values:
        return "must list at least one port"
    return next((f"has {v}: {_port(v)}" for v in values if _port(v)), "")


def _positive(value) -> str:
    return "" if value > 0 else "must be above 0"


def _not_negative(value) -> str:
    return "" if value >= 0 else "must not be negative"


def _fraction(value) -> str:
    return "" if 0 <= value <= 1 else "must be between 0 and 1"


def _percent(value) -> str:
    return "" if 0 <= value <= 100 else "must be a whole percentage from 0 to 100"


def _duration(value) -> str:
    return "" if NGINX_TIME.match(value) else "must be an nginx time such as \"500ms\", \"4s\" or \"1m\""


def _size(value) -> str:
    return "" if NGINX_SIZE.match(value) else "must be an nginx size such as \"1m\" or \"512k\""


NGINX_RATE = re.compile(r"^[1-9]\d*r/[sm]$")


def _rate(value) -> str:
    return "" if NGINX_RATE.match(value) else "must be an nginx rate such as \"10r/s\" or \"60r/m\""


HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]{2,45}\]$")


def _host(value) -> str:
    """A host name or an IP address: the text goes into nginx's config as it is."""
    return "" if HOST.match(value) else "must be a host name or an IP address (such as 127.0.0.1)"


def _host_or_empty(value) -> str:
    return _host(value) if value else ""


def _addresses(values) -> str:
    for value in values:
        host, _, port = value.rpartition(":")
        if not host or _host(host) or not port.isascii() or not port.isdigit() or _port(int(port)):
            return f"has {value!r}: each must be host:port (a host name or an IP address, a port 1-65535)"
    return ""


def _failure_policy(value) -> str:
    return "" if value in ("other-color", "fail") else "must be \"other-color\" or \"fail\""


def check(fn, default=dataclasses.MISSING, **kwargs):
    """A dataclass field whose value ``fn`` checks when the configuration is loaded."""
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return field(metadata={"check": fn}, **kwargs)


# -- the settings ------------------------------------------------------------------------
@dataclass(frozen=True)
class NginxSettings:
    """The front door: nginx rendered from ``template``, on loopback by default."""

    binary: str = ""
    template: str = field(default_factory=default_template)
    port: int = check(_port, 8080)
    preview_port: int = check(_port, 8081)
    client_max_body_size: str = check(_size, "1m")
    upstream_keepalive: int = check(_positive, 32)
    upstream_keepalive_timeout: str = check(_duration, "4s")
    proxy_connect_timeout: str = check(_duration, "1s")
    proxy_read_timeout: str = check(_duration, "30s")
    # How long a server may take to answer /predict or /feedback before the next is tried.
    predict_timeout: str = check(_duration, "1s")
    # When every server of the active color fails a request: "other-color" tries the
    # other color (another version answers; counted as a failover), "fail" answers 502.
    on_active_failure: str = check(_failure_policy, "other-color")
    # Where nginx sees its files and which address it listens on, when it does not run
    # here (a container mounting <run_dir>/nginx); empty: the local paths and `host`.
    proxy_dir: str = ""
    listen_host: str = check(_host_or_empty, "")
    # -- the trust boundary (docs/adr/0011-trust-boundary.md): slow or abusive clients must
    # not starve the rest. 0 worker processes means one per core ("auto").
    worker_processes: int = check(_not_negative, 0)
    worker_connections: int = check(_positive, 4096)
    # A client must send its whole header, and each piece of its body, within these; a
    # slow reader must take each piece of the answer within send_timeout.
    client_header_timeout: str = check(_duration, "10s")
    client_body_timeout: str = check(_duration, "10s")
    send_timeout: str = check(_duration, "10s")
    keepalive_timeout: str = check(_duration, "15s")
    # Requests being served at once per client address (limit_conn; 429 beyond it).
    connections_per_client: int = check(_positive, 256)
    # POST /feedback per client address (limit_req; 429 beyond the burst).
    feedback_rate: str = check(_rate, "10r/s")
    feedback_burst: int = check(_not_negative, 20)


@dataclass(frozen=True)
class ColorSettings:
    """One color: its ports (one gunicorn each), the version it starts with, its addresses."""

    ports: tuple[int, ...] = check(_ports)
    version: str = ""
    # The upstream addresses nginx uses (default: host:port for each port).
    servers: tuple[str, ...] = check(_addresses, ())
    # The addresses the controller checks (default: the same as servers).
    probe: tuple[str, ...] = check(_addresses, ())


@dataclass(frozen=True)
class GunicornSettings:
    """How the local runtime starts each color's gunicorn."""

    workers: int = check(_positive, defaults.GUNICORN_WORKERS)
    threads: int = check(_positive, defaults.GUNICORN_THREADS)
    keepalive: int = check(_positive, defaults.GUNICORN_KEEPALIVE)
    start_timeout: float = check(_positive, 60.0)
    stop_timeout: float = check(_positive, 30.0)


@dataclass(frozen=True)
class SwitchSettings:
    """How a switch is verified, and how long a command waits for another one."""

    verify_timeout: float = check(_positive, 5.0)
    verify_responses: int = check(_positive, 3)
    lock_timeout: float = check(_not_negative, 30.0)
    # Where the controller verifies a switch and runs the smoke evaluation (default:
    # http://host:nginx.port and http://host:nginx.preview_port).
    front_url: str = ""
    preview_url: str = ""


@dataclass(frozen=True)
class GateSettings:
    """Pre-promotion gates (docs/adr/0004-gated-deploys.md)."""

    min_accuracy: float = check(_fraction, 0.90)
    min_f1_score: float = check(_fraction, 0.90)
    max_metric_drop: float = check(_fraction, 0.05)
    smoke_max_latency_ms: float = check(_positive, 250.0)


def _confidence(value) -> str:
    return "" if 0.5 <= value < 1 else "must be at least 0.5 and below 1"


def _lease(value) -> str:
    return "" if 3 <= value <= 300 else "must be from 3 to 300 seconds (it is renewed every second)"


def _drop(value) -> str:
    return "" if 0 < value < 1 else "must be above 0 and below 1"


@dataclass(frozen=True)
class BakeSettings:
    """The post-promotion bake and ``watch``, and the statistics of their checks (docs/adr/0010)."""

    period: float = check(_positive, 30.0)
    interval: float = check(_positive, 2.0)
    failure_limit: int = check(_not_negative, 2)
    # The 5xx share of the requests since the bake began, above the stable version's in the
    # same window (above 0 when the stable version has no traffic there: an absolute limit).
    max_error_rate: float = check(_fraction, 0.01)
    min_requests: int = check(_positive, 50)
    min_live_accuracy: float = check(_fraction, 0.80)
    min_labelled: int = check(_positive, 20)
    # The drop below the stable version's live accuracy the sequential test is built to catch.
    accuracy_drop: float = check(_drop, 0.10)
    # false: a window may pass before live accuracy passed (labels can still fail it).
    require_labels: bool = False
    # Each check fails a good version, or passes a bad one, with at most 1 - confidence,
    # however many polls look at it.
    confidence: float = check(_confidence, 0.99)
    # The share of requests slower than slow_request_ms (0.01 and 250: p99 under 250 ms),
    # judged when the servers report latency buckets in /health.
    max_slow_rate: float = check(_fraction, 0.01)
    slow_request_ms: float = check(_positive, 250.0)
    scale_down_delay: float = check(_not_negative, 0.0)
    # Paired evidence (docs/adr/0014): the share of the requests each color answers that
    # nginx also sends to the other color during a judged window, so that both versions
    # answer the same requests; the paired rows needed before a paired check decides; the
    # share of rows on which the new version predicting another class than the stable one
    # fails it (half of it passes: the sequential test decides between the two); how far a
    # class's share of predictions may move.
    paired_sample: int = check(_percent, 100)
    min_pairs: int = check(_positive, 50)
    max_disagreement: float = check(_fraction, 0.11)
    max_class_shift: float = check(_fraction, 0.05)
    # A window still undecided at its period goes on while evidence arrives, up to this
    # long; still undecided then, the rollout pauses (keeping its share) until `bluegreen
    # promote`, `abort`, a verdict, or pause_timeout (then back to the stable version;
    # 0: no pause, the rollout ends `degraded` as an undecided bake did before).
    max_period: float = check(_positive, 120.0)
    pause_timeout: float = check(_not_negative, 3600.0)
    # The controller judging a window renews a lease every second; nginx applies what the
    # window exposes users to (a canary's share, a bake's new color, paired copies) only
    # while it lives. A controller that dies or freezes: users are back on the stable
    # version this many seconds (and at most one more) after its last renewal
    # (docs/adr/0017-a-lease-on-exposure.md).
    lease: float = check(_lease, 10.0)


@dataclass(frozen=True)
class DashboardSettings:
    """`bluegreen dashboard`: a read-only page on an admin address, loopback by default.

    Anywhere else it needs a token (``BLUEGREEN_DASHBOARD_TOKEN``, or
    ``<run_dir>/dashboard.token``, made when missing)."""

    host: str = check(_host, "127.0.0.1")
    port: int = check(_port, 8090)
    # How often the page asks for the state, in seconds.
    refresh: float = check(_positive, 1.0)
    # History events shown.
    events: int = check(_positive, 15)


@dataclass(frozen=True)
class DriftSettings:
    """`bluegreen drift`: live inputs against the card's training data (docs/adr/0014)."""

    # No verdict below this many live rows (inconclusive, exit 1).
    min_rows: int = check(_positive, 200)
    # PSI at or above it is drift (0.1-0.25 moderate, above 0.25 shifted).
    max_psi: float = check(_positive, 0.25)
    # The two-sample tests' confidence for the whole report (split over the features).
    confidence: float = check(_confidence, 0.99)


@dataclass(frozen=True)
class RuntimeCommands:
    """Command lines of the commands runtime; ``$color``, ``$other``, ``$version``, ``$conf``."""

    start_color: str = ""
    stop_color: str = ""
    proxy_start: str = ""
    proxy_stop: str = ""
    proxy_test: str = ""
    proxy_reload: str = ""
    route: str = ""
    routed: str = ""


def _runtime_kind(value) -> str:
    return "" if value in ("local", "commands") else "must be \"local\" or \"commands\""


@dataclass(frozen=True)
class RuntimeSettings:
    """"local" runs gunicorn and nginx here; "commands" runs the commands (docker, kubectl)."""

    kind: str = check(_runtime_kind, "local")
    commands: RuntimeCommands = field(default_factory=RuntimeCommands)
    command_timeout: float = check(_positive, 300.0)
    workdir: str = "."


@dataclass(frozen=True)
class StackConfig:
    """The whole controller configuration, with paths resolved."""

    run_dir: Path
    models_dir: Path
    host: str
    nginx: NginxSettings
    colors: dict[str, ColorSettings]
    gunicorn: GunicornSettings
    switch: SwitchSettings
    gates: GateSettings
    bake: BakeSettings
    runtime: RuntimeSettings
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    source: str = "defaults"
    warnings: tuple[str, ...] = ()     # deprecated settings that were read and ignored
    models_dir_from: str = "the default: the project's models folder"   # for errors that searched it

    def unknown_version(self, version: str) -> str | None:
        """Why ``version`` is unknown here, naming the directory searched and where that came
        from; None when ``models_dir`` has its card or its artifact."""
        if card_path(self.models_dir, version).exists() or artifact_path(self.models_dir, version).exists():
            return None
        return (f"unknown version {version}: no model card {card_path(self.models_dir, version).name} in "
                f"{self.models_dir} ({self.models_dir_from})")

    def servers(self, color: str) -> list[str]:
        """Upstream addresses of ``color`` as nginx reaches them."""
        spec = self.colors[color]
        return list(spec.servers) or [f"{self.host}:{port}" for port in spec.ports]

    def probe_addresses(self, color: str) -> list[str]:
        """Addresses the controller checks ``color`` on."""
        return list(self.colors[color].probe) or self.servers(color)

    def default_versions(self) -> dict[str, str]:
        return {color: self.colors[color].version for color in COLORS}

    def front_url(self) -> str:
        return self.switch.front_url or f"http://{self.host}:{self.nginx.port}"

    def preview_url(self) -> str:
        return self.switch.preview_url or f"http://{self.host}:{self.nginx.preview_port}"

    def nginx_binary(self) -> str:
        binary = self.nginx.binary or shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists() and not shutil.which(binary):
            raise ConfigError(f"nginx not found ({binary}): install it (make nginx) or set nginx.binary")
        return binary


SECTIONS = {
    "nginx": NginxSettings, "gunicorn": GunicornSettings, "switch": SwitchSettings,
    "gates": GateSettings, "bake": BakeSettings, "runtime": RuntimeSettings,
    "dashboard": DashboardSettings, "drift": DriftSettings,
}
COLOR_DEFAULTS = {
    "blue": ColorSettings(ports=(8001,), version=SHIPPED_VERSIONS[0]),
    "green": ColorSettings(ports=(8002,), version=SHIPPED_VERSIONS[1]),
}


def default_models_dir() -> str:
    """The project's models folder (where `make models` trains), wherever a config file is; the
    working directory's ``models`` for an installed copy with no checkout around it."""
    return str(ROOT / "models" if (ROOT / "pyproject.toml").is_file() else Path.cwd() / "models")


def default_table() -> dict:
    """The defaults as the nested table a TOML file overrides. A relative path set in a config
    file is read from that file's folder (``load_config``); models_dir's default is absolute."""
    table = {"run_dir": ".run", "models_dir": default_models_dir(), "host": "127.0.0.1"}
    table.update({name: dataclasses.asdict(cls()) for name, cls in SECTIONS.items()})
    table["colors"] = {color: dataclasses.asdict(spec) for color, spec in COLOR_DEFAULTS.items()}
    return table


# -- loading -----------------------------------------------------------------------------
def _describe(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _convert(value, hint, key: str):
    """``value`` as ``hint`` (int, float, str or a tuple of them), or a ConfigError."""
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config: {key} must be a list, got {_describe(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config: {key} must be an integer, got {_describe(value)}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(f"config: {key} must be a number, got {_describe(value)}")
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"config: {key} must be true or false, got {_describe(value)}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"config: {key} must be a string, got {_describe(value)}")
    return value


def _build(cls, table: dict, where: str):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = _build(hints[f.name], table[f.name], key)
            continue
        value = _convert(table[f.name], hints[f.name], key)
        problem = f.metadata.get("check", lambda v: "")(value)
        if problem:
            raise ConfigError(f"config: {key} {problem}, got {value!r}")
        values[f.name] = value
    return cls(**values)


# Settings that are still accepted but no longer do anything: key -> why.
DEPRECATED = {
    "nginx.fail_timeout": "servers are no longer taken out after failures (docs/adr/0008); remove it",
}


def _merge(base: dict, extra: dict, where: str = "", warnings: list | None = None) -> dict:
    for key, value in extra.items():
        name = f"{where}.{key}" if where else key
        if name in DEPRECATED and key not in base:
            if warnings is not None:
                warnings.append(f"config: {name} is ignored: {DEPRECATED[name]}")
            continue
        if key not in base:
            raise ConfigError(f"config: unknown setting {name}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config: {name} must be a table, got {_describe(value)}")
            _merge(base[key], value, name, warnings)
        else:
            base[key] = value
    return base


def _read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML ({exc})") from exc


def _apply_environment(table: dict, environ) -> None:
    if environ.get("BLUEGREEN_RUN_DIR"):
        table["run_dir"] = str(Path(environ["BLUEGREEN_RUN_DIR"]).resolve())  # relative to where we run
    if environ.get("BLUEGREEN_HOST"):
        table["host"] = environ["BLUEGREEN_HOST"]
    if environ.get("BLUEGREEN_DASHBOARD_HOST"):
        table["dashboard"]["host"] = environ["BLUEGREEN_DASHBOARD_HOST"]
    targets = {"BLUEGREEN_PORT": (table["nginx"], "port"), "BLUEGREEN_PREVIEW_PORT": (table["nginx"], "preview_port"),
               "BLUEGREEN_DASHBOARD_PORT": (table["dashboard"], "port")}
    for name, (section, key) in targets.items():
        if environ.get(name):
            try:
                section[key] = int(environ[name])
            except ValueError as exc:
                raise ConfigError(f"environment: {name} must be a port number, got {environ[name]!r}") from exc
    for color in COLORS:
        name = f"BLUEGREEN_{color.upper()}_PORT"
        if environ.get(name):
            try:
                table["colors"][color]["ports"] = [int(p) for p in environ[name].split(",")]
            except ValueError as exc:
                raise ConfigError(f"environment: {name} must be port numbers separated by commas, "
                                  f"got {environ[name]!r}") from exc


def load_config(path: str | None = None, environ=None) -> StackConfig:
    """Read, type and check the configuration; anything wrong is a ConfigError naming the key."""
    environ = os.environ if environ is None else environ
    table = default_table()
    source = "defaults"
    warnings: list[str] = []
    if path is None and Path("bluegreen.toml").is_file():
        path = "bluegreen.toml"
    base = Path.cwd()
    models_from = StackConfig.models_dir_from
    if path is not None:
        read = _read_toml(path)
        _merge(table, read, warnings=warnings)
        source = str(path)
        base = Path(path).resolve().parent
        table["runtime"]["workdir"] = str(base / table["runtime"]["workdir"])
        if isinstance(read.get("models_dir"), str):
            relative = not Path(read["models_dir"]).is_absolute()
            models_from = f"models_dir = {read['models_dir']!r} in {path}" + (
                ", read from that file's folder" if relative else "")
    _apply_environment(table, environ)
    for key in ("run_dir", "models_dir", "host"):
        _convert(table[key], str, key)
    if _host(table["host"]):
        raise ConfigError(f"config: host {_host(table['host'])}, not {table['host']!r}")
    config = StackConfig(
        run_dir=(base / table["run_dir"]).resolve(),
        models_dir=(base / table["models_dir"]).resolve(),
        host=table["host"],
        colors={color: _build(ColorSettings, table["colors"][color], f"colors.{color}") for color in COLORS},
        source=source,
        warnings=tuple(warnings),
        models_dir_from=models_from,
        **{name: _build(cls, table[name], name) for name, cls in SECTIONS.items()},
    )
    _check_rules(config)
    return config


def _check_rules(config: StackConfig) -> None:
    """Rules that span settings."""
    ports = [config.nginx.port, config.nginx.preview_port]
    for color in COLORS:
        ports += config.colors[color].ports
    if len(set(ports)) != len(ports):
        raise ConfigError(f"config: ports must all differ (nginx.port, nginx.preview_port, colors.*.ports), "
                          f"got {ports}")
    if config.dashboard.port in ports:
        raise ConfigError(f"config: dashboard.port ({config.dashboard.port}) must differ from the stack's ports "
                          f"{ports}")
    upstream = nginx_seconds(config.nginx.upstream_keepalive_timeout)
    if upstream >= config.gunicorn.keepalive:
        raise ConfigError(
            f"config: nginx.upstream_keepalive_timeout ({config.nginx.upstream_keepalive_timeout}) must be below "
            f"gunicorn.keepalive ({config.gunicorn.keepalive}s): nginx would reuse connections gunicorn has closed")
    if config.runtime.kind == "commands":
        for name in ("start_color", "stop_color"):
            if not getattr(config.runtime.commands, name):
                raise ConfigError(f"config: runtime.commands.{name} must be set when runtime.kind is \"commands\"")

