"""The store and web suites pass under gevent too (issue #12).

The main session runs every unit test with plain threads.  Here the suites
that touch SQLite and the HTTP API run again in a fresh interpreter that
gevent has monkey-patched first, as ``gunicorn -k gevent`` and ``python
wsgi.py`` do: statements then go through gevent's thread pool, waits are
cooperative, and the same assertions must hold.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.env import REPO_ROOT

SUITES = ("tests/unit/store", "tests/unit/web", "tests/unit/engine/test_access.py")


def test_store_and_web_suites_pass_under_gevent() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.patched_pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *SUITES,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO_ROOT,
    )
    tail = out.stdout[-5000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and " failed" not in out.stdout, tail
