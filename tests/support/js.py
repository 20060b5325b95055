"""Running the official PocketBase JS SDK's test scripts (tests/js/*.test.mjs) under Node."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.env import REPO_ROOT
from tests.support.servers import GunicornServer

ROOT = REPO_ROOT
JS = ROOT / "tests" / "js"
SU_EMAIL = "root@example.com"
SU_PASSWORD = "rootpassword123"


def node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (ROOT / "node_modules" / "pocketbase").is_dir():
        return "npm packages are not installed (run `npm ci` in the repository root)"
    return None


@contextlib.contextmanager
def start_sdk_server(schema: Path, data_dir: Path) -> Iterator[GunicornServer]:
    """``gunicorn -k gevent`` (one worker) on ``schema`` with the SDK scripts'
    superuser (``SU_EMAIL``/``SU_PASSWORD``) upserted first, through the CLI."""
    env = {"REALTIME_SCHEMA": str(schema), "REALTIME_DATA_DIR": str(data_dir)}
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
