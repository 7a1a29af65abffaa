"""The prediction log: a sample of the rows a color served, bounded and rotated, read back on its port."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest

from app.server import create_app
from app.server.predlog import PredictionLog

ROW = [5.1, 3.5, 1.4, 0.2]
OTHER = [6.7, 3.0, 5.2, 2.3]


def make_client(shipped_models, **settings):
    return create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.0.0", "COLOR": "blue",
                       **settings}).test_client()


def test_every_served_row_is_kept_at_sample_1_with_its_predicted_class(shipped_models):
    client = make_client(shipped_models, PREDLOG_SAMPLE=1.0)
    assert client.post("/predict", json={"x": ROW}).status_code == 200
    assert client.post("/predict", json={"instances": [ROW, OTHER]}).status_code == 200
    assert client.post("/predict", json={"x": [1, 2]}).status_code == 400      # refused: nothing served
    log = client.get("/prediction-log").get_json()
    assert log["color"] == "blue" and log["version"] == "v1.0.0" and log["sample"] == 1.0
    assert log["features"] == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    assert [(r["x"], r["y"]) for r in log["rows"]] == [(ROW, "setosa"), (ROW, "setosa"), (OTHER, "virginica")]
    assert client.get(f"/prediction-log?since={log['rows'][-1]['t'] + 1}").get_json()["rows"] == []


def test_feedback_and_the_warm_up_are_not_served_predictions(shipped_models):
    client = make_client(shipped_models, PREDLOG_SAMPLE=1.0, FEEDBACK_TOKEN="feedback-token-0123456789")
    headers = {"Authorization": "Bearer feedback-token-0123456789"}
    assert client.post("/feedback", json={"x": ROW, "label": "setosa"}, headers=headers).status_code == 200
    assert client.get("/prediction-log").get_json()["rows"] == []


def test_the_default_sample_keeps_about_a_tenth_of_the_rows(shipped_models):
    random.seed(7)
    client = make_client(shipped_models)
    for _ in range(20):
        client.post("/predict", json={"instances": [ROW] * 100})
    kept = len(client.get("/prediction-log").get_json()["rows"])
    assert 150 <= kept <= 250  # 2,000 rows at 10%: 200, within five standard deviations


def test_sample_0_keeps_nothing(shipped_models):
    client = make_client(shipped_models, PREDLOG_SAMPLE=0.0)
    client.post("/predict", json={"instances": [ROW] * 50})
    assert client.get("/prediction-log").get_json()["rows"] == []


@pytest.mark.parametrize(("settings", "message"), [
    ({"PREDLOG_SAMPLE": 1.5}, "PREDLOG_SAMPLE must be between 0 and 1, not 1.5"),
    ({"PREDLOG_SAMPLE": -0.1}, "PREDLOG_SAMPLE must be between 0 and 1, not -0.1"),
    ({"PREDLOG_MAX_BYTES": 10}, "PREDLOG_MAX_BYTES must be at least 1024, not 10"),
])
def test_settings_out_of_range_stop_the_server(shipped_models, settings, message):
    with pytest.raises(ValueError, match=message):
        make_client(shipped_models, **settings)


def test_the_environment_sets_the_sample(shipped_models, monkeypatch):
    monkeypatch.setenv("PREDLOG_SAMPLE", "0.5")
    assert make_client(shipped_models).get("/prediction-log").get_json()["sample"] == 0.5


def test_the_log_is_read_with_the_metrics_token_when_one_is_set(shipped_models):
    client = make_client(shipped_models, METRICS_TOKEN="metrics-token-0123456789")
    assert client.get("/prediction-log").status_code == 401
    auth = {"Authorization": "Bearer metrics-token-0123456789"}
    assert client.get("/prediction-log", headers=auth).status_code == 200
    answer = client.get("/prediction-log?since=soon", headers=auth)
    assert answer.status_code == 400 and answer.get_json()["error"] == '"since" must be a Unix time in seconds'


def test_files_rotate_and_stay_bounded_per_worker(tmp_path):
    log = PredictionLog(str(tmp_path), sample=1.0, max_bytes=2048)
    rows = np.array([ROW])
    for i in range(200):
        log.record(rows + i, ["setosa"])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"predlog-{os.getpid()}.jsonl", f"predlog-{os.getpid()}.jsonl.1"]
    assert all((tmp_path / name).stat().st_size <= 2048 for name in files)
    kept = log.read()
    # The newest rows are kept, oldest first: more than one file's worth, at most two.
    firsts = [r["x"][0] for r in kept]
    assert firsts == sorted(firsts) and firsts[-1] == ROW[0] + 199 and len(kept) < 200
    assert sum((tmp_path / name).stat().st_size for name in files) > 2048


def test_a_line_cut_short_is_skipped_not_fatal(tmp_path):
    log = PredictionLog(str(tmp_path), sample=1.0)
    log.record(np.array([ROW]), ["setosa"])
    with open(tmp_path / f"predlog-{os.getpid()}.jsonl", "a") as handle:
        handle.write('{"t": 1, "x": [1, 2')
    assert [r["y"] for r in log.read()] == ["setosa"]


def test_the_log_is_json_lines_a_reader_can_take_as_they_are(tmp_path):
    log = PredictionLog(str(tmp_path), sample=1.0)
    log.record(np.array([ROW, OTHER]), ["setosa", "virginica"])
    lines = (tmp_path / f"predlog-{os.getpid()}.jsonl").read_text().splitlines()
    assert [json.loads(line)["y"] for line in lines] == ["setosa", "virginica"]
    assert set(json.loads(lines[0])) == {"t", "x", "y"}


def test_each_row_of_a_batch_is_kept_with_the_sample_probability_wherever_it_stands():
    random.seed(3)
    log = PredictionLog(None, sample=0.1)
    kept = [0] * 100
    for _ in range(10_000):
        for i in log._pick(100):
            kept[i] += 1
    assert sum(kept) / 10_000 == pytest.approx(10, abs=0.2)
    assert all(0.085 <= k / 10_000 <= 0.115 for k in kept)  # each position within 5 standard deviations
