"""Predictors: the fast path (ONNX under onnxruntime) and scikit-learn.

scikit-learn's per-call overhead makes one RandomForest row cost milliseconds; the same
model exported to ONNX costs microseconds. At load time the ONNX export is verified
(checksum from the card, or the version is refused) and must reproduce scikit-learn's
answers on the whole holdout, as recorded in the card, or the server unpickles the model
and serves it through scikit-learn, saying why (docs/adr/0002-fast-predict-path.md, docs/adr/0006-onnx-only-serving.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from app.artifacts.loading import load_model

log = logging.getLogger(__name__)

PROBABILITY_TOLERANCE = 1e-4


class SklearnPredictor:
    """Calls the scikit-learn model itself."""

    name = "sklearn"
    # What the input is converted to before the model sees it (validation refuses more).
    input_dtype = np.float64

    def __init__(self, model):
        self.model = model

    def open(self) -> None:
        """Nothing to reopen after a fork."""

    def close(self) -> None:
        """Nothing to release before a fork."""

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        import sklearn

        # A non-finite answer is judged by the caller (ModelServer.probabilities); numpy
        # need not warn about it.
        with sklearn.config_context(assume_finite=True), np.errstate(all="ignore"):
            return self.model.predict_proba(rows)


class OnnxPredictor:
    """Runs the ONNX export of the model in onnxruntime, one thread per call.

    onnxruntime sessions are not fork-safe (a worker that inherits one hangs or aborts at
    exit), so under gunicorn the master closes its session before forking and each worker
    opens its own (``app/server/gunicorn_hooks.py``).
    """

    name = "onnx"
    # skl2onnx exports take float32: 1e39 would become inf, and inf NaN probabilities.
    input_dtype = np.float32

    def __init__(self, path):
        self.path = str(path)
        self.session = None
        self.open()
        self.input_name = self.session.get_inputs()[0].name
        names = [output.name for output in self.session.get_outputs()]
        self.output_index = names.index("probabilities")

    def open(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])

    def close(self) -> None:
        self.session = None

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.asarray(rows, dtype=np.float32)}
        return self.session.run(None, feed)[self.output_index]


def check_against_reference(predictor, reference: dict) -> str:
    """"" when ``predictor`` reproduces the recorded holdout answers; the reason otherwise."""
    rows = np.asarray(reference["rows"], dtype=np.float64)
    expected = np.asarray(reference["probabilities"], dtype=np.float64)
    got = predictor.predict_proba(rows)
    if got.shape != expected.shape or not np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)):
        return f"ONNX export disagrees with scikit-learn on the holdout classes ({len(rows)} rows)"
    worst = float(np.max(np.abs(got - expected)))
    if worst > PROBABILITY_TOLERANCE:
        return f"ONNX probabilities differ from scikit-learn by {worst:.2e} on the holdout"
    return ""


def _fast_path_or_reason(card: dict, models_dir: Path):
    fast = card.get("fast_path") or {}
    if fast.get("format") != "onnx":
        return None, fast.get("reason") or "the card has no fast-path export"
    if not card.get("reference"):
        return None, "the card has no holdout reference to check the fast path against"
    # verify_artifact has checked the file against the card's sha256 (a changed export is
    # refused there, not served around); what is left is whether it reproduces scikit-learn.
    path = Path(models_dir) / fast["artifact"]
    try:
        predictor = OnnxPredictor(path)
    except Exception as exc:
        return None, f"{path}: onnxruntime cannot load it ({exc})"
    reason = check_against_reference(predictor, card["reference"])
    return (None, reason) if reason else (predictor, "")


def build_predictor(card: dict, models_dir: Path, mode: str = "auto"):
    """Return (predictor, reason): the fast path when it verifies, else scikit-learn.

    ``card`` has already been verified (``app.artifacts.cards.verify_artifact``); scikit-learn is
    only imported, and the artifact only unpickled, when the fast path is not used.
    """
    if mode == "sklearn":
        reason = "scikit-learn requested by configuration"
    else:
        predictor, reason = _fast_path_or_reason(card, models_dir)
        if predictor is not None:
            rows = len(card["reference"]["rows"])
            return predictor, f"ONNX export reproduces scikit-learn's answers on the {rows} holdout rows"
        log.warning("serving %s through scikit-learn: %s", card["version"], reason)
    loaded = load_model(models_dir, card["version"])
    return SklearnPredictor(loaded.model), reason
