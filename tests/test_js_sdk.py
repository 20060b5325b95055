"""The official PocketBase JS SDK (npm ``pocketbase``) against a real gunicorn -k gevent server.

Each ``tests/js/*.test.mjs`` file runs under ``node --test``.  Node and the npm
packages (``npm ci`` from the repository's lockfile) are needed: without them
these tests skip with the reason, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import IN_CI
from .servers import GunicornServer

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
SU_EMAIL = "root@example.com"
SU_PASSWORD = "rootpassword123"

pytestmark = pytest.mark.e2e


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (ROOT / "node_modules" / "pocketbase").is_dir():
        return "npm packages are not installed (run `npm ci` in the repository root)"
    return None


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    missing = _node_missing()
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


def run_node(server: GunicornServer, script: str) -> None:
    env = {
        **os.environ,
        "BASE_URL": f"http://{server.host}:{server.port}",
        "SU_EMAIL": SU_EMAIL,
        "SU_PASSWORD": SU_PASSWORD,
    }
    proc = subprocess.run(
        ["node", "--test", "--test-reporter=spec", str(JS / script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:] + server.log_tail()


def test_records_and_auth_with_the_sdk(sdk_server: GunicornServer) -> None:
    run_node(sdk_server, "records.test.mjs")


def test_realtime_with_the_sdk(sdk_server: GunicornServer) -> None:
    run_node(sdk_server, "realtime.test.mjs")
