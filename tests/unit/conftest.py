"""Unit-suite hooks: the gevent rerun of the suite runs beside it (tests/support/patched_run.py)."""

from __future__ import annotations

import pytest

from tests.support.patched_run import SELF
from tests.support.patched_run import PatchedRun


def _selected(session: pytest.Session) -> bool:
    return any(item.nodeid == SELF for item in session.items)


def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """The test that reads the gevent rerun's result runs last: the rerun has had
    the whole unit suite's time to finish on the other core."""
    items.sort(key=lambda item: item.nodeid == SELF)  # stable: the rest keep their order


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Start the gevent rerun with the first unit test, if its test was selected."""
    if _selected(item.session):
        PatchedRun.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    PatchedRun.finish()
