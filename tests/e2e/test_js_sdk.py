"""The official PocketBase JS SDK (npm ``pocketbase``) against a real gunicorn -k gevent server.

Each ``tests/js/*.test.mjs`` file runs under ``node --test``.  Node and the npm
packages (``npm ci`` from the repository's lockfile) are needed: without them
these tests skip with the reason, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.env import IN_CI
from tests.support.js import JS
from tests.support.js import node_missing
from tests.support.js import run_node
from tests.support.js import start_sdk_server
from tests.support.servers import GunicornServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    missing = node_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    data_dir = tmp_path_factory.mktemp("sdk-data")
    with start_sdk_server(JS / "schema.json", data_dir) as server:
        yield server


def test_records_and_auth_with_the_sdk(sdk_server: GunicornServer) -> None:
    run_node(sdk_server, "records.test.mjs")


def test_realtime_with_the_sdk(sdk_server: GunicornServer) -> None:
    run_node(sdk_server, "realtime.test.mjs")
