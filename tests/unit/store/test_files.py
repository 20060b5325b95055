"""store.files: PocketBase's stored names, content sniffing and the storage layout."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from realtime_flask.store.files import FileStorage
from realtime_flask.store.files import Upload
from realtime_flask.store.files import mime_matches
from realtime_flask.store.files import normalize_name
from realtime_flask.store.files import safe_name
from realtime_flask.store.files import sniff

R = "[a-z0-9]{10}"
PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


@pytest.mark.parametrize(
    ("original", "mime", "pattern"),
    [
        ("Hello World.txt", "", rf"hello_world_{R}\.txt"),
        ("MyPhoto.JPG", "", rf"my_photo_{R}\.JPG"),
        ("archive.tar.gz", "", rf"archive_{R}\.tar\.gz"),
        ("a.png", "", rf"a{R}_{R}\.png"),
        ("noext", "image/png", rf"noext_{R}\.png"),
        ("blob", "text/plain; charset=utf-8", rf"blob_{R}\.txt"),
        ("blob", "application/octet-stream", rf"blob_{R}"),
        # As PocketBase: the name is all extension, the stem gets a random part.
        (".hidden", "", rf"{R}_{R}\.hidden"),
        ("../../etc/passwd", "", rf"{R}_{R}\.etcpasswd"),
        ("x" * 150 + ".txt", "", rf"x{{100}}_{R}\.txt"),
        ("ünï cödé.md", "", rf"n_c_d_{R}\.md"),
    ],
)
def test_names_are_pocketbases(original: str, mime: str, pattern: str) -> None:
    name = normalize_name(original, mime)
    assert re.fullmatch(pattern, name), name
    assert safe_name(name)
    assert normalize_name(original, mime) != name, "the random part differs each time"


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (PNG_HEAD, "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a...", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7", "application/pdf"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"plain text \xc3\xa9", "text/plain; charset=utf-8"),
        (b"", "text/plain; charset=utf-8"),
        (b"\x00\x01\x02", "application/octet-stream"),
    ],
)
def test_sniff(head: bytes, mime: str) -> None:
    assert sniff(head) == mime


def test_mime_matches_ignores_parameters_and_knows_jpg() -> None:
    assert mime_matches("text/plain; charset=utf-8", ["text/plain"])
    assert mime_matches("image/jpeg", ["image/jpg"])
    assert not mime_matches("image/png", ["image/jpeg", "text/plain"])


def test_storage_layout_save_delete(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    upload = Upload.from_stream("Doc.txt", io.BytesIO(b"content"))
    assert (upload.size, upload.mime) == (7, "text/plain; charset=utf-8")
    storage.save("pbc_1", "rec123456789012", [upload])
    path = tmp_path / "pbc_1" / "rec123456789012" / upload.name
    assert path.read_bytes() == b"content"
    stored = storage.open("pbc_1", "rec123456789012", upload.name)
    assert stored is not None and stored.size == 7
    stored.handle.close()
    storage.delete("pbc_1", "rec123456789012", [upload.name, "missing_file.txt"])
    assert not path.parent.exists(), "an emptied record folder goes too"
    assert storage.open("pbc_1", "rec123456789012", upload.name) is None
    with pytest.raises(ValueError):
        storage.path("pbc_1", "..", "x.txt")
    assert storage.open("pbc_1", "rec", "../x.txt") is None


def test_a_temporary_root_is_removed_on_close() -> None:
    storage = FileStorage(None)
    root = storage.root
    assert root.is_dir()
    storage.close()
    assert not root.exists()
