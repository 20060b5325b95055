"""Cases that import gevent, run in a fresh interpreter.

Importing gevent changes what the library decides for the rest of a process
(``RedisBroker`` refuses to start under gevent without patched sockets, as it
must in production), so test modules that need gevent in process live in
``tests/isolated/`` as ``cases_*.py``, which the main session does not collect,
and run here with pytest in a child process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.env import REPO_ROOT

ROOT = REPO_ROOT
CASES = sorted(p.name for p in (REPO_ROOT / "tests" / "isolated").glob("cases_*.py"))


@pytest.mark.parametrize("module", CASES)
def test_isolated_cases_pass(module: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "python_files=cases_*.py",
            f"tests/isolated/{module}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout
