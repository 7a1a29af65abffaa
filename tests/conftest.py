"""Shared fixtures (a trained models directory, the app, its test client) and the markers
that select tests, set here from what each test uses so that nobody marks a test by hand:

- ``integration``: every test under ``tests/integration/`` (they start real gunicorn
  and/or nginx processes on loopback);
- ``models``: every test that uses the trained shipped versions, that is the
  ``shipped_models`` fixture, directly or through another fixture (``models_dir``,
  ``app``, ``client``, ...).

``make test-unit`` runs the others (``pytest -m "not integration and not models"``): no
process of the stack, no training. Nothing heavy is imported here at import time (Flask,
scikit-learn): the fixtures import what they need when a test uses them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
# The fixtures that train or load the shipped versions; any fixture built on them is found
# through ``item.fixturenames``, which holds every fixture a test uses, however indirectly.
MODEL_FIXTURES = frozenset({"shipped_models"})
# The tests that run longest (about a minute per fuzzing case, 25 s of load): under
# pytest-xdist they start first, each on a worker of its own (see ``spread_for_workers``).
LONGEST = ("tests/integration/test_fuzz.py::", "tests/integration/test_load.py::")


def pytest_collection_modifyitems(config, items):
    # pytest-xdist needs every worker to collect the same tests in the same order; a test
    # parametrized over a set (whose order follows string hashing, random per process)
    # would differ, so the cases of each test function run in the order of their ids.
    first = {}
    for index, item in enumerate(items):
        first.setdefault(item.nodeid.split("[", 1)[0], index)
    items.sort(key=lambda item: (first[item.nodeid.split("[", 1)[0]], item.nodeid))
    for item in items:
        if INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: every worker orders alike
        items[:] = spread_for_workers(items)


def spread_for_workers(items: list) -> list:
    """The order pytest-xdist hands tests out in (``make test``: --dist load, at most two
    tests a step): the longest first, each followed by another integration test so that no
    two of them queue on one worker, then the rest of tests/integration/, then the others,
    which fill in as workers free up. A run in one process keeps the collection order."""
    longest = [item for item in items if item.nodeid.startswith(LONGEST)]
    integration = [item for item in items if item.get_closest_marker("integration") and item not in longest]
    ordered = []
    for item in longest:
        ordered.append(item)
        if integration:
            ordered.append(integration.pop(0))
    chosen = set(map(id, ordered + integration))
    return ordered + integration + [item for item in items if id(item) not in chosen]


@pytest.fixture(scope="session")
def shipped_models(tmp_path_factory):
    """The two shipped versions, trained once per test session (once per xdist worker)."""
    from app.training.shipped import train_shipped

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
    from app.server import create_app

    return create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.0.0", "COLOR": "blue"})


@pytest.fixture
def client(app):
    return app.test_client()
