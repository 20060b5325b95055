"""The official PocketBase JS SDK (npm ``pocketbase``) against a real gunicorn -k gevent server.

Each ``tests/js/*.test.mjs`` file runs under ``node --test``.  Node and the npm
packages (``npm ci`` from the repository's lockfile) are needed: without them
these tests skip with the reason, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.env import IN_CI
from tests.support.js import JS
from tests.support.js import ROOT
from tests.support.js import SU_EMAIL
from tests.support.js import SU_PASSWORD
from tests.support.js import node_missing
from tests.support.js import run_node
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
    env = {"REALTIME_SCHEMA": str(JS / "schema.json"), "REALTIME_DATA_DIR": str(data_dir)}
    subprocess.run(
        [sys.executable, "-m", "realtime_flask", "superuser", "upsert", SU_EMAIL, SU_PASSWORD],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=60,
    )
    with GunicornServer(workers=1, env=env) as server:
        yield server


def test_records_and_auth_with_the_sdk(sdk_server: GunicornServer) -> None:
    run_node(sdk_server, "records.test.mjs")


def test_realtime_with_the_sdk(sdk_server: GunicornServer) -> None:
    run_node(sdk_server, "realtime.test.mjs")
