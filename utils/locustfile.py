"""Load test for the front door: single predicts, small batches and health checks.

Every response is validated: a 200 with a wrong body is a failure. The versions that
answered are counted and, when LOCUST_VERSIONS_FILE is set, written there as JSON when the
run stops (the switch-under-load scenario reads them).

Headless:  .venv/bin/locust -f utils/locustfile.py --headless -u 8 -r 8 -t 30s \\
             --host http://127.0.0.1:8080 --csv reports/load --html reports/load.html
Web UI:    .venv/bin/locust -f utils/locustfile.py --web-host 127.0.0.1 --host http://127.0.0.1:8080
             (then open http://127.0.0.1:8089)
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter

from locust import FastHttpUser, between, events, task

ROWS = [
    ([5.1, 3.5, 1.4, 0.2], "setosa"),
    ([6.7, 3.0, 5.2, 2.3], "virginica"),
    ([5.9, 3.0, 4.2, 1.5], "versicolor"),
    ([6.3, 2.9, 5.6, 1.8], "virginica"),
    ([4.9, 3.0, 1.4, 0.2], "setosa"),
]
CLASSES = {"setosa", "versicolor", "virginica"}
VERSIONS: Counter = Counter()


def check_item(item: dict) -> str:
    if item.get("prediction") not in CLASSES:
        return f"bad prediction {item.get('prediction')!r}"
    probabilities = item.get("probabilities") or {}
    if set(probabilities) != CLASSES or abs(sum(probabilities.values()) - 1) > 1e-3:
        return f"bad probabilities {probabilities!r}"
    return ""


class ModelUser(FastHttpUser):
    wait_time = between(0, 0.01)

    def _validate(self, response, expect_items: int | None) -> None:
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            return
        try:
            body = response.json()
        except ValueError:
            response.failure("response is not JSON")
            return
        version = body.get("version")
        if not version or response.headers.get("X-Model-Version") != version:
            response.failure(f"version missing or not matching X-Model-Version: {version!r}")
            return
        VERSIONS[version] += 1
        items = [body] if expect_items is None else body.get("predictions") or []
        if expect_items is not None and len(items) != expect_items:
            response.failure(f"expected {expect_items} predictions, got {len(items)}")
            return
        for item in items:
            problem = check_item(item)
            if problem:
                response.failure(problem)
                return

    @task(8)
    def predict_one(self):
        row, _ = random.choice(ROWS)
        with self.client.post("/predict", json={"x": row}, name="/predict [1]", catch_response=True) as response:
            self._validate(response, None)

    @task(2)
    def predict_batch(self):
        rows = [random.choice(ROWS)[0] for _ in range(8)]
        with self.client.post("/predict", json={"instances": rows}, name="/predict [8]",
                              catch_response=True) as response:
            self._validate(response, 8)

    @task(1)
    def health(self):
        with self.client.get("/health", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            body = response.json()
            if body.get("status") != "ok" or "accuracy" not in body.get("metrics", {}):
                response.failure(f"unhealthy: {body.get('status')!r}")


@events.test_stop.add_listener
def write_versions(environment, **kwargs):
    path = os.environ.get("LOCUST_VERSIONS_FILE")
    if path:
        with open(path, "w") as handle:
            json.dump(dict(VERSIONS), handle)
