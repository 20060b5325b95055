"""``python -m realtime_flask``: the superuser command, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import default_schema
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore
from tests.support.env import REPO_ROOT

ROOT = REPO_ROOT
SU = RequestContext(auth=None, superuser=True)


def run(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    return subprocess.run(
        [sys.executable, "-m", "realtime_flask", *args],
        cwd=ROOT,
        env={**clean, "REALTIME_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def can_log_in(data_dir: Path, email: str, password: str) -> bool:
    """Whether the store opened on ``data_dir`` accepts these superuser credentials."""
    store = RecordStore(default_schema(), data_dir / "data.db", passwords=Passwords(n=2**4))
    try:
        return store.auth_with_password("_superusers", email, password) is not None
    finally:
        store.close()


def test_superuser_upsert_creates_then_updates(tmp_path: Path) -> None:
    created = run("superuser", "upsert", "root@example.com", "firstpass123", data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Successfully created superuser 'root@example.com'!\n"
    assert created.stderr == ""
    assert (tmp_path / "data.db").exists()
    assert can_log_in(tmp_path, "root@example.com", "firstpass123")

    updated = run("superuser", "upsert", "root@example.com", "secondpass456", data_dir=tmp_path)
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout == "Successfully updated superuser 'root@example.com'!\n"
    assert can_log_in(tmp_path, "root@example.com", "secondpass456")
    assert not can_log_in(tmp_path, "root@example.com", "firstpass123")

    store = RecordStore(default_schema(), tmp_path / "data.db", passwords=Passwords(n=2**4))
    try:
        result = store.list_records("_superusers", SU)
        assert [r["email"] for r in result.items] == ["root@example.com"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("email", "password", "expected"),
    [
        ("root@example.com", "short", "password: Must be at least 8 character(s)."),
        ("not-an-email", "longenough123", "email: Must be a valid email address."),
    ],
)
def test_superuser_upsert_rejects_bad_input(
    tmp_path: Path, email: str, password: str, expected: str
) -> None:
    result = run("superuser", "upsert", email, password, data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: Failed to create record.")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_schema_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = run(
        "superuser",
        "upsert",
        "root@example.com",
        "longenough123",
        data_dir=tmp_path,
        REALTIME_SCHEMA=str(missing),
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot read schema file {str(missing)!r}")
    assert "Traceback" not in result.stderr


def test_help(tmp_path: Path) -> None:
    result = run("--help", data_dir=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m realtime_flask")
    assert "superuser" in result.stdout and "serve" in result.stdout
    result = run("superuser", "upsert", "--help", data_dir=tmp_path)
    assert result.returncode == 0
    assert "email" in result.stdout and "password" in result.stdout
    result = run("superuser", data_dir=tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr
    assert not (tmp_path / "data.db").exists()
