"""``python wsgi.py`` with a schema that does not load: one line on stderr, exit 2,
no traceback (issue #11; the README promises one message naming the collection
and field)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.env import REPO_ROOT


def test_a_bad_schema_stops_wsgi_py_with_one_line_and_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "schema.json"
    bad.write_text(json.dumps([{"name": "posts", "fields": [{"name": "x", "type": "nope"}]}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env.update({"REALTIME_SCHEMA": str(bad), "REALTIME_DATA_DIR": ":memory:"})
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "wsgi.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("error: ") and "'posts'" in lines[0] and "'x'" in lines[0]
