"""The server's fixtures: the app of tests/conftest.py, with a feedback token configured."""

from __future__ import annotations

import pytest

FEEDBACK_TOKEN = "test-feedback-token-0123456789"
AUTH = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}


@pytest.fixture
def app(shipped_models):
    from app.server import create_app

    return create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.0.0", "COLOR": "blue",
                       "FEEDBACK_TOKEN": FEEDBACK_TOKEN})
