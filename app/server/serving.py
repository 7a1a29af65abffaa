"""The data plane: a loaded, verified model and the operations on it.

The HTTP views in ``app/server/views.py`` stay thin; they parse, call one method here and return.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from app.artifacts.cards import verify_artifact
from app.errors import InvalidInput
from app.server.metrics import Metrics
from app.server.predictors import build_predictor
from app.server.predlog import PredictionLog
from app.server.records import Recorder
from app.server.validation import InputLimit


@dataclass
class ModelServer:
    """One color's model: verified at start, warmed, then only read.

    There is no "loading" state to report: ``start`` returns only once the model is
    verified, loaded and warmed, and the app (and each gunicorn worker) answers nothing
    before that. Ready means not draining.
    """

    settings: dict
    card: dict
    predictor: object
    predictor_reason: str
    metrics: Metrics
    records: Recorder
    predlog: PredictionLog
    started_at: float = field(default_factory=time.time)
    draining: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, settings: dict) -> ModelServer:
        """Load and verify the configured version, build its predictor, warm it up."""
        card = verify_artifact(settings["MODELS_DIR"], settings["MODEL_VERSION"])
        predictor, reason = build_predictor(card, settings["MODELS_DIR"], settings["PREDICTOR"])
        metrics = Metrics()
        # The records sit beside the color's metrics files unless told otherwise.
        record_dir = settings["RECORD_DIR"] or (os.path.join(metrics.multiprocess_dir, "records")
                                                if metrics.multiprocess_dir else None)
        server = cls(settings, card, predictor, reason, metrics, Recorder(record_dir),
                     PredictionLog.from_settings(settings, metrics.multiprocess_dir))
        server.warm_up()
        server.metrics.model_info.labels(server.version, server.color, predictor.name).set(1)
        return server

    @property
    def version(self) -> str:
        return self.card["version"]

    @property
    def color(self) -> str:
        return self.settings["COLOR"]

    @property
    def n_features(self) -> int:
        return len(self.card["feature_names"])

    @property
    def class_names(self) -> list[str]:
        return self.card["class_names"]

    @property
    def input_limit(self) -> InputLimit:
        """The magnitude the predictor's input type represents; validation refuses more."""
        return InputLimit.of(self.predictor.input_dtype)

    def probabilities(self, rows: np.ndarray, single: bool) -> np.ndarray:
        """The predictor's probabilities, refused (400) when any of them is not finite.

        Values within the input type can still overflow inside the model (a linear model
        times 3e38 is inf in float32, and its softmax NaN): such an answer would be invalid
        JSON and a made-up class, so the client is told instead.
        """
        # An overflow is answered below as the client's 400; numpy need not warn about it.
        with np.errstate(over="ignore", invalid="ignore"):
            probabilities = self.predictor.predict_proba(rows)
        finite = np.isfinite(probabilities).all(axis=1)
        if not finite.all():
            i = int(np.argmin(finite))
            where = '"x"' if single else f'"instances"[{i}]'
            raise InvalidInput(
                f"{where} is too large for this model to compute: its answer overflows (largest value "
                f"{float(np.abs(rows[i]).max()):.3g}; {self.input_limit.describe()}); "
                "send values on the scale of the training data")
        return probabilities

    def warm_up(self) -> None:
        """Run the holdout once so the first real request pays no first-call costs."""
        rows = np.asarray(self.card["reference"]["rows"]) if self.card.get("reference") else np.zeros(
            (1, self.n_features))
        self.predictor.predict_proba(rows)
        self.predictor.predict_proba(rows[:1])

    def is_ready(self) -> bool:
        return not self.draining.is_set()

    def predict(self, rows: np.ndarray, single: bool = False) -> list[dict]:
        """Return one {"prediction", "probabilities"} item per row."""
        probabilities = self.probabilities(rows, single)
        names = self.class_names
        winners = probabilities.argmax(axis=1).tolist()
        items = []
        for winner, row in zip(winners, probabilities.astype(np.float64).round(6).tolist()):
            label = names[winner]
            self.metrics.prediction_counter(label).inc()
            items.append({"prediction": label, "probabilities": dict(zip(names, row))})
        self.predlog.record(rows, [item["prediction"] for item in items])
        return items

    def record_feedback(self, rows: np.ndarray, labels: list[str], single: bool = False) -> dict:
        """Compare the served model's answers with true labels and count the outcomes."""
        predicted = [self.class_names[int(i)] for i in self.probabilities(rows, single).argmax(axis=1)]
        correct = sum(p == t for p, t in zip(predicted, labels))
        if correct:
            self.metrics.feedback.labels("correct").inc(correct)
        if len(labels) - correct:
            self.metrics.feedback.labels("incorrect").inc(len(labels) - correct)
        return {"recorded": len(labels), "correct": correct, "predictions": predicted}

    def health(self) -> dict:
        """The /health document: status, version, card metrics, live metrics."""
        card = self.card
        return {
            "status": "draining" if self.draining.is_set() else "ok",
            "ready": self.is_ready(),
            "version": self.version,
            "color": self.color,
            "algorithm": card.get("algorithm"),
            "sha256": card["sha256"],
            "sklearn_version": card["sklearn_version"],
            "metrics": {key: card["metrics"][key] for key in ("accuracy", "f1_score", "precision", "recall")},
            "holdout_size": card.get("holdout", {}).get("size"),
            "predictor": {"path": self.predictor.name, "reason": self.predictor_reason},
            # The live figures count from this process's start (a bake compares two polls).
            "live": {**self.metrics.live_stats(),
                     "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at))},
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
