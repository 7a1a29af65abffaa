"""The data plane: a loaded, verified model and the operations on it.

The HTTP views in ``app/server/views.py`` stay thin; they parse, call one method here and return.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from app.artifacts.cards import verify_artifact
from app.errors import InvalidInput, ModelFailure
from app.server.codec import plain_text
from app.server.metrics import Metrics
from app.server.predictors import build_predictor
from app.server.predlog import PredictionLog
from app.server.records import Recorder
from app.server.validation import InputLimit

# An answer that is not finite is the client's doing only for values this many times past
# the training data's largest magnitude (they overflow inside the model); on the scale of
# the training data it is the model's own failure (a log of 0, a division by zero).
OVERFLOW_FACTOR = 1e6


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
    def model_name(self) -> str:
        """The name the inference protocols address the model by: configured, else the card's."""
        return self.settings.get("MODEL_NAME") or self.card.get("name") or "iris"

    @cached_property
    def plain_strings(self) -> bool:
        """Whether every string an answer names (classes, version, color) is plain (``codec.plain_text``)."""
        return plain_text(*self.class_names, self.version, self.color)

    @property
    def training_scale(self) -> float:
        """The largest magnitude of any feature in the training data (1 when the card has none)."""
        stats = self.card.get("training_stats") or {}
        bounds = [abs(float(s[key])) for s in stats.values() if isinstance(s, dict)
                  for key in ("min", "max") if isinstance(s.get(key), (int, float))]
        return max(bounds + [1.0])

    @property
    def n_features(self) -> int:
        return len(self.card["feature_names"])

    @property
    def class_names(self) -> list[str]:
        return self.card["class_names"]

    @cached_property
    def input_limit(self) -> InputLimit:
        """The magnitude the predictor's input type represents; validation refuses more."""
        return InputLimit.of(self.predictor.input_dtype)

    def probabilities(self, rows: np.ndarray, single: bool = False, where=None) -> np.ndarray:
        """The predictor's probabilities, every one of them finite.

        ``where(i)`` names row ``i`` in messages (default: "x" for one row, "instances"[i]).
        A model that raises is a ``ModelFailure`` (500) naming the model and version. An
        answer that is not finite is the client's 400 when the row's values are far past the
        training data's scale (a linear model times 3e38 is inf in float32, and its softmax
        NaN: send values on the scale of the training data), and the model's 500 otherwise
        (a pipeline taking the log of 0): never NaN in an answer, never a 400 for the model.
        """
        where = where or (lambda i: '"x"' if single else f'"instances"[{i}]')
        try:
            probabilities = np.asarray(self.predictor.predict_proba(rows))
        except Exception as exc:
            raise ModelFailure(f"model {self.model_name} {self.version} failed on this input "
                               f"({type(exc).__name__}: {str(exc)[:200]}); the model is at fault, "
                               "not the request") from exc
        if probabilities.ndim != 2 or probabilities.shape != (len(rows), len(self.class_names)):
            raise ModelFailure(f"model {self.model_name} {self.version} answered probabilities of shape "
                               f"{probabilities.shape} for {len(rows)} rows and {len(self.class_names)} classes")
        if not np.isfinite(probabilities).all():
            i = int(np.argmin(np.isfinite(probabilities).all(axis=1)))
            largest = float(np.abs(rows[i]).max())
            if largest > OVERFLOW_FACTOR * self.training_scale:
                raise InvalidInput(
                    f"{where(i)} is too large for this model to compute: its answer overflows (largest value "
                    f"{largest:.3g}; {self.input_limit.describe()}); send values on the scale of the training data")
            raise ModelFailure(
                f"model {self.model_name} {self.version} answered a probability that is not a number for "
                f"{where(i)}, whose values are on the scale of its training data (largest {largest:.3g}): "
                "the model is at fault, not the request")
        return probabilities

    def answer(self, rows: np.ndarray, single: bool = False, where=None) -> tuple[list[str], np.ndarray]:
        """(the predicted label of each row, their probabilities), counted once per class."""
        probabilities = self.probabilities(rows, single, where)
        winners = probabilities.argmax(axis=1)
        names = self.class_names
        labels = [names[i] for i in winners.tolist()]
        # One increment per class seen in this request, not one per row.
        if len(labels) == 1:
            self.metrics.prediction_counter(labels[0]).inc()
        else:
            for index, count in enumerate(np.bincount(winners, minlength=len(names)).tolist()):
                if count:
                    self.metrics.prediction_counter(names[index]).inc(count)
        self.predlog.record(rows, labels)
        return labels, probabilities

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
        labels, probabilities = self.answer(rows, single)
        names = self.class_names
        return [{"prediction": label, "probabilities": dict(zip(names, row))}
                for label, row in zip(labels, probabilities.astype(np.float64).round(6).tolist())]

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
