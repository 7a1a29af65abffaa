"""What a scraper reads about the stack from nginx: the route, the controller's saved rollout,
and the paired figures of the window the controller judges now."""

from __future__ import annotations

import calendar
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.control.bake import watch
from app.control.config import load_config
from app.control.deploy import Deployer
from app.control.exposition import rollout_exposition, window_exposition
from app.control.nginx_render import render_config, render_context
from app.control.rollout import Phase, Rollout, RolloutState
from app.control.store import StateStore
from app.errors import ControllerError
from tests.control.fakes import World, make_controller, write_card

TEMPLATE = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf.j2").read_text()
LABELS = '{phase="baking",version="v1.1.0",source="blue",target="green"}'
WINDOW = '{kind="canary",color="green",version="v1.1.0",stable_version="v1.0.0"}'
DISAGREEMENT = ("bluegreen_rollout_disagreement", "bluegreen_rollout_disagreement_low",
                "bluegreen_rollout_disagreement_high", "bluegreen_rollout_disagreement_limit")
# A bake of 10 s polled every second; 20 requests a second, all paired (tests/control/fakes.py).
BAKE = """
[bake]
period = 10.0
interval = 1.0
failure_limit = 1
min_requests = 20
max_error_rate = 0.1
require_labels = false
max_period = 20.0
pause_timeout = 0
"""


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


# -- the judged window's paired figures ------------------------------------------------------------
def window(paired=240, checks=None, ended=False, kind="canary") -> dict:
    """A window document as the judge writes it at a poll (``judge.window_document``)."""
    disagreement = {"name": "disagreement with the stable version", "verdict": "inconclusive", "n": 250,
                    "needed": 50, "limit": 0.11, "direction": "below", "estimate": 0.064, "low": 0.031,
                    "high": 0.118}
    return {"kind": kind, "rollout": "r1", "color": "green", "version": "v1.1.0",
            "stable": {"color": "blue", "version": "v1.0.0"}, "started": 1.0, "updated": 2.0, "period": 60.0,
            "polls": 7, "verdict": "inconclusive", "reason": "", "ended": ended, "paired": paired,
            "checks": [disagreement] if checks is None else checks}


def test_a_window_with_pairs_shows_its_disagreement_its_bounds_and_its_limit():
    text = window_exposition(window())
    assert samples(text) == [f"bluegreen_rollout_paired_requests{WINDOW} 240",
                             f"bluegreen_rollout_paired_rows{WINDOW} 250",
                             f"bluegreen_rollout_disagreement{WINDOW} 0.064",
                             f"bluegreen_rollout_disagreement_low{WINDOW} 0.031",
                             f"bluegreen_rollout_disagreement_high{WINDOW} 0.118",
                             f"bluegreen_rollout_disagreement_limit{WINDOW} 0.11"]
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert all(families[name].type == "gauge" and families[name].documentation for name in DISAGREEMENT)


def test_below_its_minimum_sample_a_window_shows_its_estimate_but_no_bounds():
    few = {"name": "disagreement with the stable version", "verdict": "inconclusive", "n": 12, "needed": 50,
           "limit": 0.11, "direction": "below", "estimate": 0.25, "low": None, "high": None}
    names = [line.split("{")[0] for line in samples(window_exposition(window(paired=12, checks=[few])))]
    assert names == ["bluegreen_rollout_paired_requests", "bluegreen_rollout_paired_rows",
                     "bluegreen_rollout_disagreement", "bluegreen_rollout_disagreement_limit"]


@pytest.mark.parametrize("document", [None, window(ended=True), window(paired=None, checks=[])],
                         ids=["no window", "an ended window", "a window without pairs"])
def test_without_a_window_judged_on_pairs_there_are_no_such_gauges(document):
    assert window_exposition(document) == ""


def test_the_rollout_file_carries_the_window_beside_the_rollout_until_the_window_ends(tmp_path):
    store = StateStore(tmp_path / "run")
    rollout = Rollout("v1.1.0", "blue", "green", canary=[10, 100], step=0, weight=10)
    rollout.advance(Phase.CANARY)
    store.save(RolloutState(versions={"blue": "v1.0.0", "green": "v1.1.0"}, rollout=rollout))
    store.save_window_metrics(window())
    text = store.rollout_metrics_path.read_text()
    assert "bluegreen_rollout_canary_weight{" in text and f"bluegreen_rollout_disagreement_low{WINDOW} 0.031" in text
    store.save(store.read({}))                      # a state saved during the window keeps it
    assert f"bluegreen_rollout_disagreement_low{WINDOW} 0.031" in store.rollout_metrics_path.read_text()
    store.save_window_metrics(window(ended=True))
    text = store.rollout_metrics_path.read_text()
    assert "bluegreen_rollout_canary_weight{" in text and "bluegreen_rollout_disagreement" not in text


@pytest.fixture
def world(tmp_path):
    models = tmp_path / "models"
    write_card(models, "v1.0.0", accuracy=0.95)
    write_card(models, "v1.2.0", accuracy=1.0)
    world = World(models)
    world.traffic = 20
    return world


@pytest.fixture
def controller(tmp_path, world):
    controller = make_controller(tmp_path, world, BAKE)
    controller.lifecycle.up()
    return controller


def served_at_each_poll(controller) -> list[tuple[dict, str]]:
    """Each window document the controller publishes, with the rollout file right after it."""
    seen: list[tuple[dict, str]] = []
    publish = controller.ctx.publish_window

    def spy(document):
        publish(document)
        seen.append((document, controller.ctx.store.rollout_metrics_path.read_text()))

    controller.ctx.publish_window = spy
    return seen


def test_each_poll_of_a_bake_writes_its_paired_figures_for_the_scraper(controller, world):
    world.version_disagreement["v1.2.0"] = 0.01
    polls = served_at_each_poll(controller)
    assert Deployer(controller).deploy("v1.2.0").phase is Phase.PROMOTED
    judged = [(document, text) for document, text in polls if not document["ended"]]
    assert len(judged) >= 5
    for document, text in judged:
        labels = '{kind="bake",color="green",version="v1.2.0",stable_version="v1.0.0"}'
        assert f"bluegreen_rollout_paired_requests{labels} {document['paired']}" in text
        assert 'bluegreen_rollout_running{phase="baking",version="v1.2.0",source="blue",target="green"} 1' in text
    document, text = judged[-1]
    check = next(c for c in document["checks"] if c["name"] == "disagreement with the stable version")
    values = {sample.name: sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples if sample.labels.get("kind") == "bake"}
    assert values["bluegreen_rollout_paired_rows"] == check["n"] >= 50
    assert (values["bluegreen_rollout_disagreement"], values["bluegreen_rollout_disagreement_low"],
            values["bluegreen_rollout_disagreement_high"], values["bluegreen_rollout_disagreement_limit"]) == (
        check["estimate"], check["low"], check["high"], 0.11)
    # The window ended with the rollout: the file says what the record says, and no more.
    text = controller.ctx.store.rollout_metrics_path.read_text()
    assert "bluegreen_rollout_disagreement" not in text and "bluegreen_rollout_paired" not in text
    assert 'bluegreen_rollout_running{phase="promoted",' in text


def ctrl_c(world):
    raise KeyboardInterrupt


def test_a_watch_stopped_by_ctrl_c_takes_its_figures_out(controller, world):
    Deployer(controller).deploy("v1.2.0")
    world.at.append((world.now + 5.5, ctrl_c))
    polls = served_at_each_poll(controller)
    with pytest.raises(KeyboardInterrupt):
        watch(controller)
    assert 'bluegreen_rollout_disagreement_limit{kind="watch",color="green",version="v1.2.0"' in polls[-1][1]
    assert "bluegreen_rollout_disagreement" not in controller.ctx.store.rollout_metrics_path.read_text()


def test_a_rollout_file_that_cannot_be_written_does_not_stop_the_rollout(controller, world):
    def full_disk(document):
        raise ControllerError("run/nginx/rollout.prom: cannot write the judged window's metrics (No space left "
                              "on device)")

    controller.ctx.store.save_window_metrics = full_disk
    assert Deployer(controller).deploy("v1.2.0").phase is Phase.PROMOTED
    warnings = [line for line in controller.lines if line.startswith("warning: run/nginx/rollout.prom")]
    assert warnings == ["warning: run/nginx/rollout.prom: cannot write the judged window's metrics (No space "
                        "left on device); the judged window goes on, and a scraper reads what the file said before"]
