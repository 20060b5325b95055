from __future__ import annotations

import os
import sys
import typing as t
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.web.app import create_app

IN_CI = os.environ.get("CI", "").lower() == "true"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(fake_clock: FakeClock) -> RealtimeManager:
    return RealtimeManager(queue_size=8, idle_timeout=300, max_lifetime=1800, clock=fake_clock)


TEST_CONFIG: t.Final[dict[str, object]] = {
    "TESTING": True,
    "REALTIME_REAPER_ENABLED": False,
    "REALTIME_KEEPALIVE_INTERVAL": 0.05,
    "REALTIME_PUBLISH_SECRET": "test-secret",
    "REALTIME_DATA_DIR": ":memory:",
}


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app(TEST_CONFIG)
    yield app
    app.extensions["realtime"].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep gevent out of this process: importing it changes what the library
    decides (see tests/test_isolated.py); such modules live in tests/isolated/."""
    isolated = any("isolated" in item.path.parts for item in session.items)
    if "gevent" in sys.modules and not isolated:
        raise pytest.UsageError(
            "a collected test module imported gevent: move it to tests/isolated/cases_*.py"
        )
