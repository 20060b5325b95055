"""The unit suite under gevent, run in the background beside the main session.

``tests/unit/test_under_gevent.py`` asserts that the whole unit suite passes in
a gevent-patched interpreter (``python -m tests.support.patched_pytest``).  That
run takes about as long as the unit suite itself, on one core: instead of
waiting for it, ``tests/unit/conftest.py`` starts it when the first unit test
of the session begins and moves the test that reads its result to the end, so
the two suites share the machine's two cores.  The run has its own
``--basetemp`` and its own output file; it is stopped (its PID only) if the
session ends without reading it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

from tests.support.env import REPO_ROOT

__all__ = ["SELF", "PatchedRun"]

#: The test that reads the result; left out of the patched run (it would start itself again).
SELF: t.Final = "tests/unit/test_under_gevent.py::test_the_unit_suite_passes_under_gevent"
#: Bounds a hung run.
TIMEOUT: t.Final[float] = 900.0


class PatchedRun:
    """One background ``patched_pytest`` run over ``tests/unit``."""

    _current: t.ClassVar[PatchedRun | None] = None

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="rf-patched-"))
        self._out = (self._dir / "output.txt").open("w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.patched_pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--basetemp",
                str(self._dir / "tmp"),
                "tests/unit",
                "--deselect",
                SELF,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            # The fuzz properties run their full 10,000 examples in the main session;
            # here 1,000 each (what they check does not depend on gevent).
            env={**os.environ, "RF_FUZZ_EXAMPLES": os.environ.get("RF_FUZZ_EXAMPLES", "1000")},
        )

    @classmethod
    def start(cls) -> PatchedRun:
        """The session's run, started on the first call."""
        if cls._current is None:
            cls._current = cls()
        return cls._current

    def result(self) -> tuple[int, str]:
        """Wait for the run (bounded); its exit status and its whole output."""
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            code = -1
        self._out.seek(0)
        return code, self._out.read()

    def stop(self) -> None:
        """Stop the run if it is still going, and remove its folder."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._out.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    @classmethod
    def finish(cls) -> None:
        if cls._current is not None:
            cls._current.stop()
            cls._current = None
