from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.web.app import create_app
from tests.support.clock import FakeClock
from tests.support.env import TEST_CONFIG


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(fake_clock: FakeClock) -> RealtimeManager:
    return RealtimeManager(queue_size=8, idle_timeout=300, max_lifetime=1800, clock=fake_clock)


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app(TEST_CONFIG)
    yield app
    app.extensions["realtime"].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


#: Set by ``tests/support/patched_pytest.py``: this session runs patched on purpose.
PATCHED_SESSION = "RF_PATCHED_SESSION"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep gevent out of this process: importing it changes what the library
    decides (see tests/unit/test_isolated.py); such modules live in tests/isolated/."""
    isolated = any("isolated" in item.path.parts for item in session.items)
    patched = os.environ.get(PATCHED_SESSION) == "1"  # tests/support/patched_pytest.py
    if "gevent" in sys.modules and not isolated and not patched:
        raise pytest.UsageError(
            "a collected test module imported gevent: move it to tests/isolated/cases_*.py"
        )
