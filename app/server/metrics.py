"""Prometheus metrics, correct across gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the gunicorn config sets it, one directory per
color, wiped at start), every worker writes its samples to files there and each scrape
aggregates them with a fresh ``MultiProcessCollector``. Without it (the Flask test client)
the metrics live in a registry of their own. ``live_stats`` reads the same aggregated
samples, so ``/health`` reports what the whole color has seen, not one worker.
"""

from __future__ import annotations

import glob
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from app.server.endpoints import TRAFFIC_ENDPOINTS

# Label values come from closed sets: every distinct value is a new series in every
# worker's file, and a client must not be able to grow them (121k invented methods made
# /metrics 10 MB and /health 4 s). Any other method is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def status_class(status: int) -> str:
    """"2xx", "4xx", "5xx": a closed label set for the latency histogram."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    """The server's metrics and how to read them back."""

    def __init__(self):
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        # In multiprocess mode samples go to files, not to a registry.
        self.registry = None if self.multiprocess_dir else CollectorRegistry()
        kwargs = {"registry": self.registry}
        self.requests = Counter(
            "bluegreen_http_requests", "HTTP requests by endpoint and status",
            ["endpoint", "method", "status"], **kwargs,
        )
        # By status class too: a refused request (4xx) is fast and is not traffic, so the
        # live latency buckets leave it out like the live request counts do.
        self.latency = Histogram(
            "bluegreen_http_request_duration_seconds", "Request latency in the app",
            ["endpoint", "status_class"], buckets=LATENCY_BUCKETS, **kwargs,
        )
        # Requests nginx mirrored here from the front door (a shadow): never users' traffic,
        # so they are counted apart and never in the live figures a bake judges.
        self.shadow_requests = Counter(
            "bluegreen_shadow_requests", "Mirrored (shadow) requests answered, by status", ["status"], **kwargs
        )
        self.predictions = Counter(
            "bluegreen_predictions", "Predictions by predicted class", ["class_name"], **kwargs
        )
        self.feedback = Counter(
            "bluegreen_feedback", "Labelled feedback by outcome", ["outcome"], **kwargs
        )
        # nginx names the color a request was meant for (X-Route-Color); this color
        # answering for the other one is a failover (docs/adr/0008).
        self.failovers = Counter(
            "bluegreen_failover_requests", "Requests answered here that nginx meant for the other color", **kwargs
        )
        # Label lookups cost more than the increments on the hot path: children are cached.
        self._request_children: dict = {}
        self._latency_children: dict = {}
        self._prediction_children: dict = {}
        self.model_info = Gauge(
            "bluegreen_model_info", "The model this color serves (value is always 1)",
            ["version", "color", "predictor"], multiprocess_mode="max", **kwargs,
        )

    def request_counter(self, endpoint: str, method: str, status: str):
        """The labelled child for one (endpoint, method, status), looked up once.

        ``endpoint`` is a route of the app or "unmatched", ``status`` one the app answers
        with; ``method`` is folded into ``METHODS`` or "other" here.
        """
        key = (endpoint, method if method in METHODS else OTHER_METHOD, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        return child

    def latency_for(self, endpoint: str, status: int):
        key = (endpoint, status_class(status))
        child = self._latency_children.get(key)
        if child is None:
            child = self._latency_children[key] = self.latency.labels(*key)
        return child

    def prediction_counter(self, class_name: str):
        child = self._prediction_children.get(class_name)
        if child is None:
            child = self._prediction_children[class_name] = self.predictions.labels(class_name)
        return child

    def _registry(self) -> CollectorRegistry:
        if self.registry is not None:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return registry

    def exposition(self) -> bytes:
        """The text exposition of all samples, aggregated over workers."""
        return generate_latest(self._registry())

    def _families(self, kind: str):
        """The samples of one kind of metric ("counter", "histogram"), over all workers."""
        if self.registry is not None:
            return self.registry.collect()
        # Only the files of that kind: /health must not pay for merging everything.
        files = glob.glob(os.path.join(self.multiprocess_dir, f"{kind}_*.db"))
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)

    def latency_buckets(self) -> dict[str, int]:
        """Cumulative counts of the prediction and feedback requests answered with a 2xx or a
        5xx, per latency bucket bound in seconds ({"0.0005": n, ..., "+Inf": total}), summed
        over the workers: the same requests as ``live_stats``'s ``requests``."""
        buckets = dict.fromkeys([*(str(b) for b in LATENCY_BUCKETS), "+Inf"], 0)
        for family in self._families("histogram"):
            for sample in family.samples:
                if (sample.name != "bluegreen_http_request_duration_seconds_bucket"
                        or sample.labels.get("endpoint") not in TRAFFIC_ENDPOINTS
                        or sample.labels.get("status_class") == "4xx"):
                    continue
                le = sample.labels.get("le", "")
                key = "+Inf" if le == "+Inf" else str(float(le))
                if key in buckets:
                    buckets[key] += int(sample.value)
        return buckets

    def live_stats(self) -> dict:
        """Requests, server errors, feedback outcomes, failovers and latency seen by the whole color.

        ``requests`` counts the prediction requests (``/predict`` and every inference
        protocol's) and the ``/feedback`` requests the color answered with a 2xx or failed
        with a 5xx: a refused request (4xx: bad input, no token) is the client's doing,
        and counting it would let anyone dilute the error rate a bake and ``watch`` judge by.
        """
        traffic_requests = server_errors = correct = incorrect = failovers = 0
        for family in self._families("counter"):
            for sample in family.samples:
                if sample.name == "bluegreen_http_requests_total":
                    status = sample.labels.get("status", "")
                    if sample.labels.get("endpoint") not in TRAFFIC_ENDPOINTS or status.startswith("4"):
                        continue
                    traffic_requests += sample.value
                    if status.startswith("5"):
                        server_errors += sample.value
                elif sample.name == "bluegreen_failover_requests_total":
                    failovers += sample.value
                elif sample.name == "bluegreen_feedback_total":
                    if sample.labels.get("outcome") == "correct":
                        correct += sample.value
                    else:
                        incorrect += sample.value
        labelled = correct + incorrect
        return {
            "requests": int(traffic_requests),
            "server_errors": int(server_errors),
            "error_rate": server_errors / traffic_requests if traffic_requests else None,
            "labelled": int(labelled),
            "correct": int(correct),
            "accuracy": correct / labelled if labelled else None,
            "failovers": int(failovers),
            "latency_buckets": self.latency_buckets(),
        }


def mark_worker_dead(pid: int) -> None:
    """Called from gunicorn's child_exit hook so gauges of dead workers are dropped."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
