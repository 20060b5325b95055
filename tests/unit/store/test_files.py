"""store.files: PocketBase's stored names, content sniffing and the storage layout."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from realtime_flask import runtime
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


class _PipeStream:
    """A stream whose ``read`` blocks the calling OS thread in ``os.read`` on a pipe
    until the test writes: run on the hub, it would stop every greenlet."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ended = False

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        """Bytes written to the pipe; a trailing NUL ends the stream."""
        if self.ended:
            return b""
        data = os.read(self.fd, 65536)
        if data.endswith(b"\0"):
            self.ended, data = True, data[:-1]
        return data


@pytest.mark.skipif(
    not runtime.gevent_active(),
    reason="about the gevent hub: runs in tests/unit/test_under_gevent.py's patched session",
)
def test_copying_an_upload_runs_off_the_hub(tmp_path: Path) -> None:
    import gevent
    from gevent import monkey

    real_thread = monkey.get_original("threading", "Thread")
    real_event = monkey.get_original("threading", "Event")()
    read_end, write_end = os.pipe()
    released = real_event
    watchdog_fired: list[bool] = []

    def watchdog() -> None:  # frees a blocked hub after 20 s, so a failure cannot hang
        if not released.wait(20):
            watchdog_fired.append(True)
            os.write(write_end, b"late\0")

    real_thread(target=watchdog, daemon=True).start()
    storage = FileStorage(tmp_path)
    upload = Upload("slow.txt", "slow_abcdefghij.txt", 4, "text/plain", _PipeStream(read_end))  # type: ignore[arg-type]
    saving = gevent.spawn(storage.save, "pbc_1", "rec123456789012", [upload])
    ticks = 0
    for _ in range(20):  # other greenlets run while the copy waits for its bytes
        gevent.sleep(0.001)
        ticks += 1
    if saving.ready():
        saving.get()  # raises what the copy raised
    assert not saving.ready() and ticks == 20 and not watchdog_fired
    released.set()
    os.write(write_end, b"data\0")
    saving.get(timeout=20)
    os.close(read_end)
    os.close(write_end)
    assert (tmp_path / "pbc_1" / "rec123456789012" / upload.name).read_bytes() == b"data"
