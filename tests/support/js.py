"""Running the official PocketBase JS SDK's test scripts (tests/js/*.test.mjs) under Node."""

from __future__ import annotations

import os
import shutil
import subprocess

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
