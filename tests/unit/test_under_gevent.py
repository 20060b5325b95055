"""The whole unit suite passes under gevent too (issue #12).

The main session runs every unit test with plain threads.  Here the same
suite runs again in a fresh interpreter that gevent has monkey-patched first,
as ``gunicorn -k gevent`` and ``python wsgi.py`` do: statements then go
through gevent's thread pools, waits are cooperative, the memory broker
delivers from a greenlet of its own, and the same assertions must hold.  (Two
tests are about the thread flavour itself and skip there, saying so.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.env import REPO_ROOT

#: This test itself is left out of the patched run (it would start itself again).
SELF = "tests/unit/test_under_gevent.py::test_the_unit_suite_passes_under_gevent"


@pytest.mark.timeout(900)
def test_the_unit_suite_passes_under_gevent() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.patched_pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit",
            "--deselect",
            SELF,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=REPO_ROOT,
        # The fuzz properties run their full 10,000 examples in the main session;
        # here 1,000 each (what they check does not depend on gevent).
        env={**os.environ, "RF_FUZZ_EXAMPLES": os.environ.get("RF_FUZZ_EXAMPLES", "1000")},
    )
    tail = out.stdout[-5000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and " failed" not in out.stdout, tail
