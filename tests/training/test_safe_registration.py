"""Registering a file from elsewhere: skops with an allow-list, pickles only when trusted.

Issue 11, point 7: ``register`` used to unpickle any file (running its payload), and took
version strings with a trailing newline, other scripts' digits or leading zeros.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from app.artifacts.loading import load_model
from app.artifacts.versions import check_version_string
from app.errors import ModelLoadError
from app.training.data import iris_split
from app.training.register import register_version
from tests.helpers import ROOT


class Payload:
    """A pickle that writes a file when it is loaded: what an attacker's model file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def fitted(model):
    x_train, _, y_train, _, _ = iris_split()
    return model.fit(x_train, y_train)


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.joblib"
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path, marker


def test_a_pickle_is_not_loaded_without_trust_pickle(models_dir, evil):
    path, marker = evil
    with pytest.raises(ModelLoadError, match="is a pickle \\(joblib\\) file, and unpickling runs whatever code it "
                                             "contains: register reads skops files by default"):
        register_version("v3.0.0", path, models_dir)
    assert not marker.exists()
    assert not (models_dir / "iris_model_v3.0.0.json").exists()


def test_register_through_the_command_line_refuses_the_pickle_and_runs_nothing(models_dir, evil):
    path, marker = evil
    result = subprocess.run([sys.executable, "-m", "app.training", "--models-dir", str(models_dir), "register",
                             "v3.0.0", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith(f"bluegreen: {path} is a pickle (joblib) file")
    assert "--trust-pickle" in result.stderr
    assert not marker.exists()


def test_trust_pickle_loads_a_joblib_file_and_says_so(models_dir, tmp_path):
    path = tmp_path / "lr.joblib"
    joblib.dump(fitted(LogisticRegression(max_iter=1000)), path)
    result = subprocess.run([sys.executable, "-m", "app.training", "--models-dir", str(models_dir), "register",
                             "v3.0.0", str(path), "--trust-pickle"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "(read from a pickle with --trust-pickle: its code ran here)" in result.stdout
    card = json.loads((models_dir / "iris_model_v3.0.0.json").read_text())
    assert card["source"] == {"format": "pickle", "file": "lr.joblib", "trusted_by": "--trust-pickle"}


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)])
def test_every_joblib_compression_is_recognised_as_a_pickle(models_dir, tmp_path, compress):
    path = tmp_path / "lr.joblib"
    joblib.dump(fitted(LogisticRegression(max_iter=1000)), path, compress=compress)
    with pytest.raises(ModelLoadError, match="is a pickle \\(joblib\\) file, and unpickling runs"):
        register_version("v3.0.0", path, models_dir)


@pytest.mark.parametrize("content, error", [
    ('run_dir = ".run"\n', "neither a skops file nor a pickle"),
    (None, "not a regular file"),
])
def test_a_file_that_is_no_model_is_named_for_what_it_is(models_dir, tmp_path, content, error):
    path = tmp_path / "bluegreen.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(ModelLoadError, match=error):
        register_version("v3.0.0", path, models_dir)


@pytest.mark.parametrize("make", [
    lambda: RandomForestClassifier(n_estimators=5, random_state=0),
    lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
])
def test_a_skops_file_of_allowed_types_is_registered_and_served(models_dir, tmp_path, make):
    path = tmp_path / "model.skops"
    skops.io.dump(fitted(make()), path)
    card = register_version("v3.0.0", path, models_dir)
    assert card["source"] == {"format": "skops", "file": "model.skops"}
    assert card["metrics"]["accuracy"] > 0.85
    loaded = load_model(models_dir, "v3.0.0")
    assert loaded.model.predict_proba(np.zeros((1, 4))).shape == (1, 3)


def test_a_skops_file_with_a_type_outside_the_allow_list_is_refused(models_dir, tmp_path):
    path = tmp_path / "model.skops"
    skops.io.dump(fitted(make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=1000))), path)
    with pytest.raises(ModelLoadError, match="the skops file contains types that are not allowed: .*"
                                             "sklearn.preprocessing._function_transformer.FunctionTransformer"):
        register_version("v3.0.0", path, models_dir)
    assert not (models_dir / "iris_model_v3.0.0.json").exists()


@pytest.mark.parametrize("version", [
    "v1.0.0\n", "v1.0.0 ", " v1.0.0", "v01.0.0", "v1.00.0", "v1.0.01", "v\u0661.0.0", "v1.0.\uff11", "V1.0.0",
    "v1.0", "v1.0.0.0", "v" + "9" * 300 + ".0.0", "v1234567.0.0", "v-1.0.0", "", None, 1,
])
def test_invalid_version_strings_are_refused(version):
    with pytest.raises(ModelLoadError, match="invalid version .*: expected vMAJOR.MINOR.PATCH"):
        check_version_string(version)


@pytest.mark.parametrize("version", ["v0.0.0", "v1.2.3", "v10.20.30", "v999999.999999.999999"])
def test_valid_version_strings(version):
    check_version_string(version)


def test_a_300_digit_version_is_one_line_not_a_traceback(models_dir, tmp_path):
    path = tmp_path / "model.skops"
    skops.io.dump(fitted(LogisticRegression(max_iter=1000)), path)
    result = subprocess.run([sys.executable, "-m", "app.training", "--models-dir", str(models_dir), "register",
                             "v" + "1" * 300 + ".0.0", str(path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("bluegreen: invalid version 'v11111") and "1...: expected vMAJOR" in result.stderr
    assert len(result.stderr) < 200
