"""pytest in a gevent-patched interpreter, patched first as every entry point does.

``tests/unit/test_under_gevent.py`` runs the store, web and access suites with it, so
the same tests pass with plain threads (the main session) and under gevent.
Usage: ``python -m tests.support.patched_pytest [pytest arguments]``.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

if __name__ == "__main__":
    os.environ["RF_PATCHED_SESSION"] = "1"  # tests/conftest.py: gevent is expected here
    sys.exit(pytest.main(sys.argv[1:]))
