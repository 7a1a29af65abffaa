"""What a scraper reads about the stack from nginx: the route and the controller's saved rollout."""

from __future__ import annotations

import calendar
import time
from pathlib import Path

from app.control.config import load_config
from app.control.exposition import rollout_exposition
from app.control.nginx_render import render_config, render_context
from app.control.rollout import Phase, Rollout, RolloutState
from app.control.store import StateStore

TEMPLATE = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf.j2").read_text()
LABELS = '{phase="baking",version="v1.1.0",source="blue",target="green"}'


def samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_before_any_rollout_nothing_runs():
    text = rollout_exposition(RolloutState(versions={"blue": "v1.0.0", "green": "v1.1.0"}))
    assert samples(text) == ['bluegreen_rollout_running{phase="idle",version="",source="",target=""} 0']
    assert "# TYPE bluegreen_rollout_running gauge" in text


def test_a_running_rollout_says_its_phase_and_since_when():
    rollout = Rollout("v1.1.0", "blue", "green")
    for phase in (Phase.SWITCHING, Phase.BAKING):
        rollout.advance(phase)
    rollout.updated = "2026-12-04T18:00:00Z"
    text = rollout_exposition(RolloutState(versions={"blue": "v1.0.0", "green": "v1.1.0"}, rollout=rollout))
    since = calendar.timegm(time.strptime("2026-12-04T18:00:00Z", "%Y-%m-%dT%H:%M:%SZ"))
    assert samples(text) == [f"bluegreen_rollout_running{LABELS} 1",
                             f"bluegreen_rollout_phase_since_seconds{LABELS} {since}"]


def test_a_canary_step_says_its_weight():
    rollout = Rollout("v1.1.0", "blue", "green", canary=[10, 50, 100], step=1, weight=50)
    rollout.advance(Phase.CANARY)
    text = rollout_exposition(RolloutState(versions={"blue": "v1.0.0", "green": "v1.1.0"}, rollout=rollout))
    assert 'bluegreen_rollout_canary_weight{phase="canary",version="v1.1.0",source="blue",target="green"} 50' in text


def test_an_ended_rollout_is_not_running():
    rollout = Rollout("v1.1.0", "blue", "green")
    rollout.advance(Phase.ABORTED, "stopped")
    text = rollout_exposition(RolloutState(versions={"blue": "v1.0.0", "green": "v1.1.0"}, rollout=rollout))
    assert samples(text) == ['bluegreen_rollout_running{phase="aborted",version="v1.1.0",source="blue",'
                             'target="green"} 0']


def test_every_saved_state_is_served_to_the_scraper_too(tmp_path):
    store = StateStore(tmp_path / "run")
    rollout = Rollout("v1.1.0", "blue", "green")
    rollout.advance(Phase.LOADING)
    store.save(RolloutState(versions={"blue": "v1.0.0", "green": "v1.1.0"}, rollout=rollout))
    text = (tmp_path / "run" / "nginx" / "rollout.prom").read_text()
    assert 'bluegreen_rollout_running{phase="loading",version="v1.1.0",source="blue",target="green"} 1' in text


def test_nginx_serves_the_route_and_the_rollout_on_the_preview_door_only(tmp_path):
    path = tmp_path / "bluegreen.toml"
    path.write_text("")
    config = load_config(str(path), environ={})
    text = render_config(TEMPLATE, render_context(config, "/srv/run/nginx", "/srv/run/nginx/active-green"))
    front = text[text.index("# Front door"):text.index("# Preview door")]
    preview = text[text.index("# Preview door"):text.index("# Shadow relay")]
    assert "/__bluegreen/metrics" not in front and "/__bluegreen/rollout" not in front
    assert 'bluegreen_route_active{color=\\"$front_color\\"} 1' in preview
    assert 'bluegreen_route_active{color=\\"$route_color\\"} 0' in preview
    assert "alias /srv/run/nginx/rollout.prom;" in preview
    # The front door's color on the preview door is read from the same marker as the front door's route.
    assert "set $front_color blue;" in preview and "set $front_color green;" in preview
    # The prediction log is read on each color's own port, never through a door.
    assert front.count("location = /prediction-log {") == 1 and preview.count("location = /prediction-log {") == 1
