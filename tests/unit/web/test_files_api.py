"""The file field end to end through the records and files routes (issue #11), via a test client.

Files land in a temporary ``REALTIME_DATA_DIR``; each test looks at the disk to see
that uploads are written, and that removed or replaced files go only after the
commit (a failed write leaves the old files and removes its own uploads).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import typing as t
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from realtime_flask.core.events import Event
from realtime_flask.core.rules import RequestContext
from realtime_flask.store.files import Upload
from realtime_flask.store.records import RecordStore
from realtime_flask.web.app import create_app

Json = dict[str, t.Any]
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
SCHEMA: t.Final[list[Json]] = [
    {
        "id": "_pb_users_auth_",
        "name": "users",
        "type": "auth",
        "fields": [
            {
                "name": "avatar",
                "type": "file",
                "maxSelect": 1,
                "mimeTypes": ["image/jpeg", "image/png"],
            }
        ],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "id = @request.auth.id",
        "deleteRule": "id = @request.auth.id",
        "fileToken": {"duration": 120},
    },
    {
        "name": "docs",
        "type": "base",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "one", "type": "file", "maxSelect": 1, "maxSize": 64},
            {
                "name": "many",
                "type": "file",
                "maxSelect": 3,
                "mimeTypes": ["image/png", "text/plain"],
                "thumbs": ["100x100"],
            },
        ],
        "listRule": "",
        "viewRule": "",
        "createRule": 'title != "refused"',
        "updateRule": "",
        "deleteRule": "",
    },
    {
        "name": "vault",
        "type": "base",
        "fields": [
            {"name": "secret", "type": "file", "maxSelect": 1, "protected": True},
            {"name": "owner", "type": "relation", "collectionId": "users", "maxSelect": 1},
        ],
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "owner = @request.auth.id",
    },
    {
        "name": "folders",
        "type": "base",
        "fields": [{"name": "title", "type": "text"}],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
    },
    {
        "name": "pages",
        "type": "base",
        "fields": [
            {"name": "scan", "type": "file", "maxSelect": 1},
            {
                "name": "folder",
                "type": "relation",
                "collectionId": "folders",
                "maxSelect": 1,
                "cascadeDelete": True,
            },
        ],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
    },
    {
        "name": "needy",
        "type": "base",
        "fields": [{"name": "doc", "type": "file", "required": True}],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
    },
]
DOCS = "/api/collections/docs/records"
VAULT = "/api/collections/vault/records"
NOT_FOUND = {"data": {}, "message": "The requested resource wasn't found.", "status": 404}
SUPERUSER = RequestContext(auth=None, superuser=True)
NAME = re.compile(r"^[a-z0-9_]+_[a-z0-9]{10}\.[a-z]+$")


class Files:
    def __init__(self, app: Flask, data_dir: Path) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.store = t.cast(RecordStore, app.extensions["realtime_store"])
        self.data_dir = data_dir
        self.docs_id = self.store.collection("docs").id

    def on_disk(self, collection_id: str, record_id: str) -> set[str]:
        folder = self.data_dir / "storage" / collection_id / record_id
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def post(self, url: str, data: dict[str, t.Any], **kwargs: t.Any) -> TestResponse:
        return self.client.post(url, data=data, content_type="multipart/form-data", **kwargs)

    def patch(self, url: str, data: dict[str, t.Any], **kwargs: t.Any) -> TestResponse:
        return self.client.patch(url, data=data, content_type="multipart/form-data", **kwargs)


def ok(response: TestResponse, status: int = 200) -> Json:
    assert response.status_code == status, response.get_data(as_text=True)
    data = response.get_json()
    assert isinstance(data, dict)
    return data


def fetch(client: FlaskClient, path: str) -> TestResponse:
    """GET ``path`` and read the whole body (a served file is closed when read)."""
    response = client.get(path)
    response.get_data()
    response.close()
    return response


def upload(content: bytes, name: str) -> tuple[io.BytesIO, str]:
    return io.BytesIO(content), name


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA), encoding="utf-8")
    data_dir = tmp_path / "data"
    app = create_app(
        {
            "TESTING": True,
            "REALTIME_SCHEMA": str(schema),
            "REALTIME_DATA_DIR": str(data_dir),
            "REALTIME_REAPER_ENABLED": False,
        }
    )
    yield Files(app, data_dir)
    app.extensions["realtime"].shutdown()
    t.cast(RecordStore, app.extensions["realtime_store"]).close()


# -- create, update and the modifiers -------------------------------------------------


def test_create_stores_files_under_storage_with_pocketbase_names(files: Files) -> None:
    record = ok(
        files.post(
            DOCS,
            {
                "title": "a",
                "one": upload(b"hello", "My Report.txt"),
                "many": [upload(PNG, "Pixel.PNG"), upload(b"notes", "notes.txt")],
            },
        )
    )
    assert re.fullmatch(r"my_report_[a-z0-9]{10}\.txt", record["one"])
    assert [n.split("_")[0] for n in record["many"]] == ["pixel", "notes"]
    assert all(NAME.match(n.lower()) for n in record["many"])
    assert files.on_disk(files.docs_id, record["id"]) == {record["one"], *record["many"]}
    stored = files.data_dir / "storage" / files.docs_id / record["id"] / record["one"]
    assert stored.read_bytes() == b"hello"


def test_modifiers_prepend_append_remove_and_clear(files: Files) -> None:
    record = ok(files.post(DOCS, {"many": [upload(b"first", "aaa.txt")]}))
    url = f"{DOCS}/{record['id']}"
    (first,) = record["many"]
    record = ok(files.patch(url, {"many+": upload(b"last", "zzz.txt")}))
    record = ok(files.patch(url, {"+many": upload(b"front", "fff.txt")}))
    front, middle, last = record["many"]
    assert middle == first and last.startswith("zzz_") and front.startswith("fff_")
    record = ok(files.patch(url, {"many-": [first]}))
    assert record["many"] == [front, last]
    assert files.on_disk(files.docs_id, record["id"]) == {front, last}
    # JSON bodies take the same modifiers; "" clears the field.
    record = ok(files.client.patch(url, json={"many": [last, front]}))
    assert record["many"] == [last, front], "the plain list reorders"
    record = ok(files.client.patch(url, json={"many": ""}))
    assert record["many"] == []
    assert files.on_disk(files.docs_id, record["id"]) == set()


def test_a_single_file_field_keeps_the_last_upload_and_drops_the_old_file(files: Files) -> None:
    record = ok(files.post(DOCS, {"one": upload(b"v1", "ver1.txt")}))
    old = record["one"]
    record = ok(files.patch(f"{DOCS}/{record['id']}", {"one": upload(b"v2", "ver2.txt")}))
    assert record["one"] != old and record["one"].startswith("ver2_")
    assert files.on_disk(files.docs_id, record["id"]) == {record["one"]}
    record = ok(
        files.patch(
            f"{DOCS}/{record['id']}", {"one": [upload(b"a", "aaa.txt"), upload(b"b", "bbb.txt")]}
        )
    )
    assert record["one"].startswith("bbb_")


def test_plain_names_with_uploads_under_the_same_key_are_kept(files: Files) -> None:
    record = ok(files.post(DOCS, {"many": [upload(b"1", "one.txt")]}))
    (kept,) = record["many"]
    record = ok(files.patch(f"{DOCS}/{record['id']}", {"many": [kept, upload(b"2", "two.txt")]}))
    assert record["many"][0] == kept and record["many"][1].startswith("two_")


def test_the_realtime_event_carries_the_file_names(files: Files) -> None:
    seen: list[t.Mapping[str, object]] = []
    previous = files.store.on_event

    def sink(event: Event) -> object:
        seen.append(event.record)
        return previous(event)

    files.store.on_event = sink
    record = ok(files.post(DOCS, {"many": [upload(PNG, "p.png")]}))
    assert seen[-1]["many"] == record["many"]


# -- validation -----------------------------------------------------------------------


def test_validation_errors_are_pocketbases(files: Files) -> None:
    body = ok(
        files.post(
            DOCS,
            {
                "one": upload(b"x" * 65, "big.txt"),
                "many": [upload(b"\x00\x01\x02", "raw.bin")],
            },
        ),
        400,
    )
    assert body["message"] == "Failed to create record."
    assert body["data"]["one"] == {
        "code": "validation_file_size_limit",
        "message": "Failed to upload big.txt - the maximum allowed file size is 64 bytes.",
        "params": {"file": "big.txt", "maxSize": 64},
    }
    mime = body["data"]["many"]
    assert mime["code"] == "validation_invalid_mime_type"
    assert re.fullmatch(
        r'"raw_[a-z0-9]{10}\.bin" mime type must be one of: image/png, text/plain\.',
        mime["message"],
    )
    too_many = ok(files.post(DOCS, {"many": [upload(b"t", f"f{i}.txt") for i in range(4)]}), 400)
    assert too_many["data"]["many"] == {
        "code": "validation_too_many_files",
        "message": "The maximum allowed files is 3",
        "params": {"maxSelect": 3},
    }
    invalid = ok(files.client.post(DOCS, json={"many": ["made_up.txt"]}), 400)
    assert invalid["data"]["many"] == {
        "code": "validation_invalid_file",
        "message": "Invalid new files: [made_up.txt].",
        "params": {"invalidFiles": ["made_up.txt"]},
    }
    required = ok(files.client.post("/api/collections/needy/records", json={}), 400)
    assert required["data"]["doc"] == {"code": "validation_required", "message": "Cannot be blank."}
    assert not (files.data_dir / "storage").exists() or not any(
        (files.data_dir / "storage").rglob("*.*")
    ), "a refused write leaves no file"


# -- failed transactions and deletes ------------------------------------------------------


def test_a_create_refused_inside_the_transaction_removes_its_uploads(files: Files) -> None:
    body = ok(files.post(DOCS, {"title": "refused", "one": upload(b"x", "x.txt")}), 400)
    assert body["message"] == "Failed to create record."
    folder = files.data_dir / "storage" / files.docs_id
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_rolled_back_update_keeps_the_old_files_and_removes_the_new(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = ok(files.post(DOCS, {"one": upload(b"old", "old.txt")}))
    real = files.store.db.transaction

    def failing(fn: t.Callable[[sqlite3.Connection], t.Any]) -> t.Any:
        def run_then_fail(conn: sqlite3.Connection) -> t.Any:
            fn(conn)  # the UPDATE runs, then the transaction rolls back
            raise sqlite3.OperationalError("disk I/O error")

        return real(run_then_fail)

    monkeypatch.setattr(files.store.db, "transaction", failing)
    new = Upload.from_stream("new.txt", io.BytesIO(b"new"))
    with pytest.raises(sqlite3.OperationalError):
        files.store.update("docs", record["id"], {"one": new}, SUPERUSER)
    monkeypatch.undo()
    assert files.on_disk(files.docs_id, record["id"]) == {record["one"]}
    assert files.store.get_record("docs", record["id"])["one"] == record["one"]  # type: ignore[index]


def test_deleting_a_record_removes_its_files_after_the_commit(files: Files) -> None:
    record = ok(files.post(DOCS, {"many": [upload(b"1", "one.txt"), upload(PNG, "p.png")]}))
    assert len(files.on_disk(files.docs_id, record["id"])) == 2
    response = files.client.delete(f"{DOCS}/{record['id']}")
    assert response.status_code == 204
    assert not (files.data_dir / "storage" / files.docs_id / record["id"]).exists()
    assert ok(files.client.get(f"/api/files/docs/{record['id']}/{record['many'][0]}"), 404) == (
        NOT_FOUND
    )


def test_a_cascade_delete_removes_the_childrens_files(files: Files) -> None:
    folder = ok(files.client.post("/api/collections/folders/records", json={"title": "f"}))
    page = ok(
        files.post(
            "/api/collections/pages/records",
            {"folder": folder["id"], "scan": upload(PNG, "scan.png")},
        )
    )
    pages_id = files.store.collection("pages").id
    assert files.on_disk(pages_id, page["id"]) == {page["scan"]}
    assert (
        files.client.delete(f"/api/collections/folders/records/{folder['id']}").status_code == 204
    )
    assert not (files.data_dir / "storage" / pages_id / page["id"]).exists()


def test_an_empty_file_input_is_not_an_upload(files: Files) -> None:
    record = ok(files.post(DOCS, {"title": "t", "one": (io.BytesIO(b""), "")}))
    assert record["one"] == ""


def user(files: Files, email: str) -> tuple[Json, str]:
    """A new user of ``users`` signed up through the API, and its auth token."""
    password = "ownerpass1"
    body = {"email": email, "password": password, "passwordConfirm": password}
    record = ok(files.client.post("/api/collections/users/records", json=body))
    login = {"identity": email, "password": password}
    token = ok(files.client.post("/api/collections/users/auth-with-password", json=login))["token"]
    return record, t.cast(str, token)


def test_a_refused_delete_keeps_the_files(files: Files) -> None:
    owner, token = user(files, "o@example.com")
    record = ok(files.post(VAULT, {"owner": owner["id"], "secret": upload(b"s", "s.txt")}))
    vault_id = files.store.collection("vault").id
    assert files.client.delete(f"{VAULT}/{record['id']}").status_code == 404  # deleteRule
    assert files.on_disk(vault_id, record["id"]) == {record["secret"]}
    response = files.client.delete(f"{VAULT}/{record['id']}", headers={"Authorization": token})
    assert response.status_code == 204
    assert files.on_disk(vault_id, record["id"]) == set()


# -- serving ----------------------------------------------------------------------------


def test_serving_headers_download_and_thumb(files: Files) -> None:
    record = ok(files.post(DOCS, {"many": [upload(PNG, "p.png"), upload(b"text", "t.txt")]}))
    png, text = record["many"]
    base = f"/api/files/{files.docs_id}/{record['id']}"
    response = fetch(files.client, f"{base}/{png}")
    assert response.status_code == 200 and response.data == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"] == f"inline; filename={png}"
    assert response.headers["Content-Length"] == str(len(PNG))
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    download = fetch(files.client, f"/api/files/docs/{record['id']}/{png}?download=1")
    assert download.headers["Content-Disposition"] == f"attachment; filename={png}"
    thumb = fetch(files.client, f"{base}/{png}?thumb=100x100")
    assert thumb.status_code == 200 and thumb.data == PNG, "a thumb answers the original"
    plain = fetch(files.client, f"{base}/{text}")
    assert plain.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert plain.headers["Content-Disposition"] == f"attachment; filename={text}"
    for path in (
        f"{base}/nope.png",
        f"/api/files/docs/nope/{png}",
        f"/api/files/nope/{record['id']}/{png}",
    ):
        assert ok(fetch(files.client, path), 404) == NOT_FOUND
    # Inline or attachment follows the type sent: PNG bytes named .svg are an attachment.
    disguised = ok(files.post(DOCS, {"many": [upload(PNG, "x.svg")]}))
    svg = fetch(files.client, f"/api/files/docs/{disguised['id']}/{disguised['many'][0]}")
    assert svg.headers["Content-Type"].startswith("image/svg+xml")
    assert svg.headers["Content-Disposition"].startswith("attachment;")
    escape = fetch(files.client, f"{base}/..%2F..%2Fdata.db")
    assert escape.status_code == 404 and set(escape.get_json()) == {"data", "message", "status"}


def test_protected_files_need_a_file_token_of_a_record_passing_the_view_rule(
    files: Files,
) -> None:
    owner, owner_token = user(files, "owner@example.com")
    other, other_token = user(files, "other@example.com")
    record = ok(files.post(VAULT, {"owner": owner["id"], "secret": upload(b"top", "s.txt")}))
    url = f"/api/files/vault/{record['id']}/{record['secret']}"
    assert ok(files.client.get(url), 404) == NOT_FOUND
    assert ok(files.client.get(f"{url}?token={owner_token}"), 404) == NOT_FOUND, "auth token"

    unauthorized = ok(files.client.post("/api/files/token"), 401)
    assert unauthorized["message"] == "The request requires valid record authorization token."
    token = ok(files.client.post("/api/files/token", headers={"Authorization": owner_token}))
    claims = jwt.decode(token["token"], options={"verify_signature": False})
    assert claims["type"] == "file" and claims["id"] == owner["id"]
    assert set(claims) == {"collectionId", "exp", "id", "type"}
    served = fetch(files.client, f"{url}?token={token['token']}")
    assert served.status_code == 200 and served.data == b"top"

    foreign = ok(files.client.post("/api/files/token", headers={"Authorization": other_token}))
    assert files.client.get(f"{url}?token={foreign['token']}").status_code == 404
    assert other["id"] != owner["id"]


# -- bad multipart input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("multipart/form-data", b"garbage"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=one"),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\n--x--"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="one"; filename="a.txt"\r\n\r\nab',
        ),
        ("multipart/form-data; boundary=" + "b" * 300, b"--" + b"b" * 300 + b"--"),
    ],
)
def test_bad_multipart_bodies_get_pocketbase_errors(
    files: Files, content_type: str, raw: bytes
) -> None:
    response = files.client.post(DOCS, data=raw, content_type=content_type)
    assert response.status_code < 500
    body = response.get_json()
    if response.status_code != 200:
        assert set(body) == {"data", "message", "status"}
    else:  # nothing usable was sent: an empty record, as PocketBase creates
        assert body["one"] == "" and body["many"] == []


def test_files_under_other_keys_and_a_file_for_a_text_field_are_ignored(files: Files) -> None:
    record = ok(files.post(DOCS, {"title": upload(b"x", "x.txt"), "nope": upload(b"y", "y.txt")}))
    assert record["title"] == "" and record["one"] == ""
    assert files.on_disk(files.docs_id, record["id"]) == set()


def test_a_non_string_file_value_is_invalid(files: Files) -> None:
    body = ok(files.client.post(DOCS, json={"many": [5]}), 400)
    assert body["data"]["many"]["code"] == "validation_invalid_value"
