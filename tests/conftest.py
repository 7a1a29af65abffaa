"""Shared fixtures: a trained models directory, the app, its test client."""

from __future__ import annotations

import shutil

import pytest

from app.server import create_app
from app.training.shipped import train_shipped


@pytest.fixture(scope="session")
def shipped_models(tmp_path_factory):
    """The two shipped versions, trained once per test session."""
    path = tmp_path_factory.mktemp("models")
    train_shipped(path)
    return path


@pytest.fixture
def models_dir(shipped_models, tmp_path):
    """A private copy of the shipped models that a test may tamper with."""
    path = tmp_path / "models"
    shutil.copytree(shipped_models, path)
    return path


@pytest.fixture
def app(shipped_models):
    return create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.0.0", "COLOR": "blue"})


@pytest.fixture
def client(app):
    return app.test_client()
