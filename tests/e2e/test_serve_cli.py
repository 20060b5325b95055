"""``python -m realtime_flask serve`` stops with one line, not a traceback, when
the service cannot be set up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.entry_points import clean_env
from tests.support.servers import REPO_ROOT


def test_serve_with_a_bad_schema_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    env = clean_env({"REALTIME_DATA_DIR": str(tmp_path), "REALTIME_SCHEMA": str(missing)})
    result = subprocess.run(
        [sys.executable, "-m", "realtime_flask", "serve", "--port", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: cannot read schema file {str(missing)!r}")
    assert "Traceback" not in result.stderr
