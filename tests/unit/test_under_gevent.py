"""The whole unit suite passes under gevent too (issue #12).

The main session runs every unit test with plain threads.  Here the same
suite runs again in a fresh interpreter that gevent has monkey-patched first,
as ``gunicorn -k gevent`` and ``python wsgi.py`` do: statements then go
through gevent's thread pools, waits are cooperative, the memory broker
delivers from a greenlet of its own, and the same assertions must hold.  (Two
tests are about the thread flavour itself and skip there, saying so.)

The rerun starts in the background with the first unit test and this test,
moved to the end of the session, reads its result (tests/support/patched_run.py).
"""

from __future__ import annotations

import pytest

from tests.support.patched_run import PatchedRun


@pytest.mark.timeout(960)
def test_the_unit_suite_passes_under_gevent() -> None:
    code, output = PatchedRun.start().result()
    tail = output[-7000:]
    assert code == 0, tail
    assert " passed" in output and " failed" not in output, tail
