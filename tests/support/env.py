"""The test environment: whether this is CI, and the app config most tests share."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

#: Under ``CI=true`` tests that need Redis, Node or a C compiler fail instead of skipping.
IN_CI: t.Final[bool] = os.environ.get("CI", "").lower() == "true"

#: The repository's root (the folder with setup.cfg).
REPO_ROOT: t.Final[Path] = Path(__file__).resolve().parents[2]

#: The collections the JS SDK tests and several unit tests load.
SCHEMA_FIXTURE: t.Final[Path] = REPO_ROOT / "tests" / "js" / "schema.json"

TEST_CONFIG: t.Final[dict[str, object]] = {
    "TESTING": True,
    "REALTIME_REAPER_ENABLED": False,
    "REALTIME_KEEPALIVE_INTERVAL": 0.05,
    "REALTIME_PUBLISH_SECRET": "test-secret",
    "REALTIME_DATA_DIR": ":memory:",
}
