"""The controller's configuration is typed and checked when it is loaded, one line per problem."""

from __future__ import annotations

import pytest

from app import defaults
from app.artifacts.versions import SHIPPED_VERSIONS
from app.control.config import ROOT, load_config, nginx_seconds
from app.errors import ConfigError


def load(tmp_path, toml="", environ=None):
    path = tmp_path / "bluegreen.toml"
    path.write_text(toml)
    return load_config(str(path), environ=environ or {})


def test_defaults_are_typed_and_come_from_one_place(tmp_path):
    config = load(tmp_path)
    assert config.gunicorn.workers == defaults.GUNICORN_WORKERS
    assert config.gunicorn.threads == defaults.GUNICORN_THREADS
    assert config.gunicorn.keepalive == defaults.GUNICORN_KEEPALIVE
    assert config.default_versions() == {"blue": SHIPPED_VERSIONS[0], "green": SHIPPED_VERSIONS[1]}
    assert config.bake.min_live_accuracy == 0.8 and isinstance(config.bake.period, float)
    # a relative run_dir is read from the config file's folder; models_dir is the project's (issue 19)
    assert config.run_dir == tmp_path / ".run" and config.models_dir == ROOT / "models"


def test_an_integer_is_accepted_where_a_number_is_expected(tmp_path):
    assert load(tmp_path, "[bake]\nperiod = 5\n").bake.period == 5.0


@pytest.mark.parametrize("toml, error", [
    ('[gates]\nmin_accuracy = "0.9"\n', "config: gates.min_accuracy must be a number, got the string '0.9'"),
    ("[bake]\nfailure_limit = 1.5\n", "config: bake.failure_limit must be an integer, got the number 1.5"),
    ("[bake]\nmin_labelled = true\n", "config: bake.min_labelled must be an integer, got the boolean true"),
    ('[colors.blue]\nports = ["8001"]\n', "config: colors.blue.ports[0] must be an integer, got the string '8001'"),
    ("[colors.blue]\nports = 8001\n", "config: colors.blue.ports must be a list, got the number 8001"),
    ("[colors.blue]\nports = []\n", "config: colors.blue.ports must list at least one port, got ()"),
    ("[nginx]\nport = 70000\n", "config: nginx.port must be a TCP port (1-65535), got 70000"),
    ("[gates]\nmin_accuracy = 1.5\n", "config: gates.min_accuracy must be between 0 and 1, got 1.5"),
    ("[bake]\ninterval = 0\n", "config: bake.interval must be above 0, got 0.0"),
    ('[nginx]\nproxy_read_timeout = "soon"\n', "config: nginx.proxy_read_timeout must be an nginx time"),
    ('[nginx]\nclient_max_body_size = "1 MB"\n', "config: nginx.client_max_body_size must be an nginx size"),
    ('[runtime]\nkind = "kubernetes"\n', 'config: runtime.kind must be "local" or "commands", got \'kubernetes\''),
    ('[nginx]\non_active_failure = "pray"\n', 'config: nginx.on_active_failure must be "other-color" or "fail"'),
    ("[nginx]\nbogus = 1\n", "config: unknown setting nginx.bogus"),
    ("[colors.red]\nports = [1]\n", "config: unknown setting colors.red"),
    ("gates = 3\n", "config: gates must be a table, got the number 3"),
    ("[nginx]\nport = 8001\n", "config: ports must all differ"),
    ('[nginx]\nupstream_keepalive_timeout = "10s"\n',
     "config: nginx.upstream_keepalive_timeout (10s) must be below gunicorn.keepalive (10s)"),
    ("[gunicorn]\nkeepalive = 3\n", "config: nginx.upstream_keepalive_timeout (4s) must be below gunicorn.keepalive"),
    ('[runtime]\nkind = "commands"\n', 'config: runtime.commands.start_color must be set when runtime.kind is'),
    ("not toml [", "invalid TOML"),
    # Addresses go into nginx's config as they are: nothing but a host (and a port) is let through.
    ('host = "127.0.0.1:19599; return 200 pwned; #"\n', "config: host must be a host name or an IP address"),
    ('[nginx]\nlisten_host = "0.0.0.0 reuseport"\n', "config: nginx.listen_host must be a host name or an IP"),
    ('[colors.blue]\nports = [1]\nservers = ["127.0.0.1:1; }"]\n', "config: colors.blue.servers has '127.0.0.1:1; }'"),
    ('[colors.green]\nports = [2]\nprobe = ["nohost"]\n', "config: colors.green.probe has 'nohost': each must be"),
])
def test_a_bad_setting_is_refused_at_load_with_the_key_named(tmp_path, toml, error):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml)
    assert str(caught.value).startswith(error) or error in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name, value, error", [
    ("BLUEGREEN_PORT", "eighty", "environment: BLUEGREEN_PORT must be a port number, got 'eighty'"),
    ("BLUEGREEN_BLUE_PORT", "1,x", "environment: BLUEGREEN_BLUE_PORT must be port numbers separated by commas"),
])
def test_a_bad_environment_override_is_refused(tmp_path, name, value, error):
    with pytest.raises(ConfigError, match=error):
        load(tmp_path, environ={name: value})


def test_a_host_from_the_environment_is_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="config: host must be a host name or an IP address"):
        load(tmp_path, environ={"BLUEGREEN_HOST": "127.0.0.1 x"})
    assert load(tmp_path, environ={"BLUEGREEN_HOST": "localhost"}).host == "localhost"


def test_environment_overrides_ports(tmp_path):
    config = load(tmp_path, environ={"BLUEGREEN_PORT": "9080", "BLUEGREEN_GREEN_PORT": "9002,9003"})
    assert config.nginx.port == 9080
    assert config.servers("green") == ["127.0.0.1:9002", "127.0.0.1:9003"]


def test_a_deprecated_setting_is_accepted_with_a_warning(tmp_path):
    config = load(tmp_path, '[nginx]\nfail_timeout = "2s"\n')
    assert config.warnings == ("config: nginx.fail_timeout is ignored: servers are no longer taken out after "
                               "failures (docs/adr/0008); remove it",)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope.toml not found"):
        load_config(str(tmp_path / "nope.toml"), environ={})


@pytest.mark.parametrize("text, seconds", [("4s", 4), ("500ms", 0.5), ("1m30s", 90), ("10", 10)])
def test_nginx_times(text, seconds):
    assert nginx_seconds(text) == seconds


@pytest.mark.parametrize("toml, error", [
    ("[bake]\nconfidence = 1.0\n", "config: bake.confidence must be at least 0.5 and below 1, got 1.0"),
    ("[bake]\nconfidence = 0.3\n", "config: bake.confidence must be at least 0.5 and below 1, got 0.3"),
    ('[bake]\nrequire_labels = "no"\n', "config: bake.require_labels must be true or false, got the string 'no'"),
    ("[bake]\nrequire_labels = 0\n", "config: bake.require_labels must be true or false, got the number 0"),
    ("[bake]\naccuracy_drop = 0\n", "config: bake.accuracy_drop must be above 0 and below 1, got 0.0"),
    ("[bake]\nmin_requests = 0\n", "config: bake.min_requests must be above 0, got 0"),
    ("[bake]\npaired_sample = 101\n", "config: bake.paired_sample must be a whole percentage from 0 to 100, got 101"),
    ("[bake]\nmax_disagreement = 2\n", "config: bake.max_disagreement must be between 0 and 1, got 2.0"),
    ("[bake]\npause_timeout = -1\n", "config: bake.pause_timeout must not be negative, got -1.0"),
    ("[bake]\nmax_slow_rate = 2\n", "config: bake.max_slow_rate must be between 0 and 1, got 2.0"),
])
def test_the_bake_statistics_are_checked_at_load(tmp_path, toml, error):
    with pytest.raises(ConfigError, match=f"^{error}$".replace("(", r"\(").replace(")", r"\)")):
        load(tmp_path, toml)


def test_the_bake_statistics_have_documented_defaults(tmp_path):
    bake = load(tmp_path).bake
    assert (bake.confidence, bake.require_labels, bake.accuracy_drop, bake.min_requests) == (0.99, False, 0.10, 50)
    assert (bake.max_slow_rate, bake.slow_request_ms) == (0.01, 250.0)
    assert (bake.paired_sample, bake.min_pairs, bake.max_disagreement, bake.max_class_shift) == (100, 50, 0.11, 0.05)
    assert (bake.period, bake.max_period, bake.pause_timeout) == (30.0, 120.0, 3600.0)
    assert load(tmp_path, "[bake]\nrequire_labels = true\n").bake.require_labels is True


def test_the_readme_config_example_loads_as_written(tmp_path):
    import re

    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```toml\n# bluegreen.toml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "bluegreen.toml").write_text(example)
    config = load_config(str(tmp_path / "bluegreen.toml"), environ={})
    assert (config.nginx.predict_timeout, config.nginx.on_active_failure) == ("1s", "other-color")


def test_models_dir_is_the_project_s_wherever_the_config_file_is_and_a_relative_one_is_read_from_its_folder(
        tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = load(elsewhere)
    assert config.models_dir == ROOT / "models"
    assert config.models_dir_from == "the default: the project's models folder"
    config = load(elsewhere, 'models_dir = "models"\nrun_dir = "run"\n')
    assert (config.models_dir, config.run_dir) == (elsewhere / "models", elsewhere / "run")
    assert config.unknown_version("v1.2.0") == (
        f"unknown version v1.2.0: no model card iris_model_v1.2.0.json in {elsewhere / 'models'} "
        f"(models_dir = 'models' in {elsewhere / 'bluegreen.toml'}, read from that file's folder)")
