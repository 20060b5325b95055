"""Record files on disk, as PocketBase's local filesystem keeps them.

Rules:

1. Layout: ``<root>/<collectionId>/<recordId>/<filename>``; ``root`` is
   ``<REALTIME_DATA_DIR>/storage`` (PocketBase: ``pb_data/storage``), or a private
   temporary folder (removed on ``close``) for an in-memory store.
2. A stored name is PocketBase's (``normalize_name``): the upload's base name in
   snake case (ASCII letters and digits; at most 100 characters; a random part
   added when shorter than 3), ``_``, 10 random ``[a-z0-9]``, then the cleaned
   extension (double extensions kept, at most 20 characters; detected from the
   content when the name has none).
3. Every disk operation (copying an upload, deleting, reading a chunk to serve)
   runs off the gevent hub through ``runtime.run_blocking``: a large file never
   holds the hub.
4. Writes come before the database transaction (the uploads), deletes after
   its commit (files a committed change no longer references).  A failed
   transaction leaves the old files as they were; the store removes the
   uploads it made for it (``delete``).  Deleting a missing file is not an
   error; a failure to delete is logged, never raised to the writer (the
   change is committed).
5. The MIME type of a file is sniffed from its first bytes (``sniff``, a short
   table of signatures and UTF-8 text), as PocketBase detects it from the
   content, not from the name or the client's ``Content-Type``.
6. Nothing here imports Flask or touches the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import typing as t
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from realtime_flask import runtime

__all__ = [
    "CHUNK_SIZE",
    "FileStorage",
    "StoredFile",
    "Upload",
    "extension_for",
    "normalize_name",
    "safe_name",
    "sniff",
]

logger = logging.getLogger(__name__)

#: Bytes read per trip to a pool thread while serving or copying a file.
CHUNK_SIZE: t.Final = 256 * 1024
#: Bytes of a file's head that ``sniff`` looks at (PocketBase's mimetype reads 3 KiB).
SNIFF_BYTES: t.Final = 3072
_RANDOM_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_EXT_INVALID = re.compile(r"[^\w.*\-+=#]+", re.ASCII)
_SNAKE_SPLIT = re.compile(r"[\W_]+", re.ASCII)
#: PocketBase's loose check of a stored file name (no path, no leading dot).
_LOOSE_NAME = re.compile(r"^[^./\\][^/\\]+$")

#: (signature test, MIME type, extension), first match wins.
_SIGNATURES: t.Final[tuple[tuple[t.Callable[[bytes], bool], str, str], ...]] = (
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), "image/png", ".png"),
    (lambda h: h.startswith(b"\xff\xd8\xff"), "image/jpeg", ".jpg"),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), "image/gif", ".gif"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "image/webp", ".webp"),
    (lambda h: h[:4] == b"\x00\x00\x01\x00", "image/x-icon", ".ico"),
    (lambda h: h.startswith(b"BM") and len(h) > 14, "image/bmp", ".bmp"),
    (lambda h: h.startswith(b"%PDF-"), "application/pdf", ".pdf"),
    (lambda h: h.startswith(b"PK\x03\x04"), "application/zip", ".zip"),
    (lambda h: h.startswith(b"\x1f\x8b"), "application/gzip", ".gz"),
    (lambda h: h[4:8] == b"ftyp", "video/mp4", ".mp4"),
    (lambda h: h.startswith(b"\x1aE\xdf\xa3"), "video/webm", ".webm"),
    (lambda h: h.startswith(b"ID3") or h[:2] in (b"\xff\xfb", b"\xff\xf3"), "audio/mpeg", ".mp3"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE", "audio/wav", ".wav"),
)
TEXT_PLAIN = "text/plain; charset=utf-8"
OCTET_STREAM = "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A head cut inside a multi-byte character is still text.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def sniff(head: bytes) -> str:
    """The MIME type of a file from its first bytes (up to ``SNIFF_BYTES``).

    A short table of signatures (PNG, JPEG, GIF, WebP, ICO, BMP, PDF, ZIP,
    gzip, MP4, WebM, MP3, WAV), then SVG (text starting with ``<svg`` or an
    XML prolog followed by ``<svg``), then UTF-8 text without NUL bytes
    (``text/plain; charset=utf-8``), else ``application/octet-stream``.
    An empty file is ``text/plain; charset=utf-8``, as PocketBase detects it.
    """
    for test, mime, _ext in _SIGNATURES:
        if test(head):
            return mime
    if _is_text(head):
        lead = head.lstrip()[:256].lower()
        if lead.startswith(b"<svg") or (lead.startswith(b"<?xml") and b"<svg" in head.lower()):
            return "image/svg+xml"
        return TEXT_PLAIN
    return OCTET_STREAM


def extension_for(mime: str) -> str:
    """The extension PocketBase gives a file of ``mime`` without one (``""`` if unknown)."""
    for _test, known, ext in _SIGNATURES:
        if known == mime:
            return ext
    return {TEXT_PLAIN: ".txt", "image/svg+xml": ".svg"}.get(mime, "")


def mime_matches(detected: str, allowed: Sequence[str]) -> bool:
    """Whether the sniffed type is one of ``allowed`` (parameters like ``charset``
    ignored; ``image/jpg`` is ``image/jpeg``)."""
    base = detected.split(";", 1)[0].strip().lower()
    aliases = {base, "image/jpg"} if base == "image/jpeg" else {base}
    return any(a.split(";", 1)[0].strip().lower() in aliases for a in allowed)


def _random(n: int) -> str:
    return "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(n))


def _extract_extension(name: str) -> str:
    """The extension with its dot, double ones kept (``a.tar.gz`` -> ``.tar.gz``)."""
    primary = name.rfind(".")
    if primary == -1:
        return ""
    secondary = name.rfind(".", 0, primary)
    return name[secondary:] if secondary >= 0 else name[primary:]


def _snakecase(text: str) -> str:
    out: list[str] = []
    for word in _SNAKE_SPLIT.split(text):
        if not word:
            continue
        if out:
            out.append("_")
        for i, c in enumerate(word):
            if c.isupper() and i > 0 and not word[i - 1].isupper():
                out.append("_")
            out.append(c)
    return "".join(out).lower()


def normalize_name(original: str, mime: str = "") -> str:
    """PocketBase's stored name for an upload called ``original`` (rule 2).

    ``mime`` (the sniffed type) gives the extension when the name has none.
    ``"My Photo.JPG"`` -> ``"my_photo_<10 random>.JPG"``; ``"a.tar.gz"`` ->
    ``"a<10 random>_<10 random>.tar.gz"``.
    """
    raw = original.encode("utf-8", "surrogatepass")
    if len(raw) > 300:
        original = raw[-300:].decode("utf-8", "ignore")
    original_ext = _extract_extension(original)
    ext = "." + _EXT_INVALID.sub("", original_ext).strip(".")
    if ext == ".":
        ext = extension_for(mime)
    if len(ext) > 20:
        ext = "." + ext[-20:].strip(".")
    stem = original[: len(original) - len(original_ext)] if original_ext else original
    clean = _snakecase(stem.strip("."))
    if len(clean) < 3:
        clean += _random(10)
    elif len(clean) > 100:
        clean = clean[:100]
    return f"{clean}_{_random(10)}{ext}"


def safe_name(name: str) -> bool:
    """Whether ``name`` can be a stored file name: 1 to 150 characters, no ``/`` or
    ``\\``, not starting with a dot (PocketBase's loose file name check)."""
    return 1 <= len(name) <= 150 and _LOOSE_NAME.match(name) is not None


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file of a request, not yet stored.

    ``stream`` is a readable, seekable binary file (the request's spooled part);
    ``size`` is in bytes; ``mime`` is sniffed from the content; ``name`` is the
    stored name (``normalize_name``), ``original_name`` the client's.
    """

    original_name: str
    name: str
    size: int
    mime: str
    stream: t.IO[bytes]

    @classmethod
    def from_stream(cls, original_name: str, stream: t.IO[bytes]) -> Upload:
        """Measure and sniff ``stream`` off the hub (rule 3) and name it (rule 2)."""

        def measure() -> tuple[int, bytes]:
            stream.seek(0)
            head = stream.read(SNIFF_BYTES)
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(0)
            return size, head

        size, head = runtime.run_blocking(measure)
        mime = sniff(head)
        return cls(original_name, normalize_name(original_name, mime), size, mime, stream)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A stored file opened for serving: its size in bytes, modification time
    (Unix seconds), sniffed MIME type and open binary file (the caller closes it)."""

    size: int
    mtime: float
    mime: str
    handle: t.BinaryIO


class FileStorage:
    """Record files under one root folder (rule 1).

    :param root: the folder; ``None``: a private temporary folder, removed by ``close``.
    """

    def __init__(self, root: str | Path | None) -> None:
        self._root = None if root is None else Path(root)
        self._temporary: Path | None = None

    @property
    def root(self) -> Path:
        """The root folder (a temporary one is made on first use)."""
        if self._root is None:
            self._root = self._temporary = Path(tempfile.mkdtemp(prefix="rf-files-"))
        return self._root

    def close(self) -> None:
        """Remove a temporary root (an in-memory store's files); a real root stays."""
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)

    def record_dir(self, collection_id: str, record_id: str) -> Path:
        """``<root>/<collectionId>/<recordId>``.

        :raises ValueError: an id that is not a plain name (a path separator, a dot start).
        """
        for part in (collection_id, record_id):
            if not safe_name(part):
                raise ValueError(f"not a plain name: {part!r}")
        return self.root / collection_id / record_id

    def path(self, collection_id: str, record_id: str, name: str) -> Path:
        """The path of a stored file.

        :raises ValueError: ``name`` or an id is not a plain name (``safe_name``).
        """
        if not safe_name(name):
            raise ValueError(f"not a plain file name: {name!r}")
        return self.record_dir(collection_id, record_id) / name

    def save(self, collection_id: str, record_id: str, uploads: Sequence[Upload]) -> None:
        """Copy each upload to its stored name, off the hub (rule 3).

        All or nothing: on a failure the uploads copied so far are removed and
        the error raised (``OSError``, or ``ValueError`` for a bad name).
        """
        if not uploads:
            return
        folder = self.record_dir(collection_id, record_id)
        targets = [self.path(collection_id, record_id, u.name) for u in uploads]

        def copy() -> None:
            done: list[Path] = []
            try:
                folder.mkdir(parents=True, exist_ok=True)
                for upload, target in zip(uploads, targets, strict=True):
                    partial = target.with_name(f".{target.name}.part")
                    upload.stream.seek(0)
                    with partial.open("wb") as out:
                        shutil.copyfileobj(upload.stream, out, CHUNK_SIZE)
                    os.replace(partial, target)
                    done.append(target)
            except BaseException:
                for path in [*done, *(t.with_name(f".{t.name}.part") for t in targets)]:
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise

        runtime.run_blocking(copy)

    def delete(self, collection_id: str, record_id: str, names: Sequence[str]) -> None:
        """Remove stored files (missing ones are fine; failures are logged, rule 4),
        and the record's folder when that leaves it empty."""
        if not names:
            return
        try:
            folder = self.record_dir(collection_id, record_id)
        except ValueError:
            return
        paths = [folder / n for n in names if safe_name(n)]

        def remove() -> None:
            for path in paths:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    logger.warning("could not delete the file %s: %s", path, exc)
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty

        runtime.run_blocking(remove)

    def delete_record(self, collection_id: str, record_id: str) -> None:
        """Remove a deleted record's folder and every file in it (rule 4)."""
        try:
            folder = self.record_dir(collection_id, record_id)
        except ValueError:
            return

        def remove() -> None:
            try:
                shutil.rmtree(folder)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("could not delete the files of %s: %s", folder, exc)

        if folder.parent.is_dir():
            runtime.run_blocking(remove)

    def open(self, collection_id: str, record_id: str, name: str) -> StoredFile | None:
        """The stored file opened for reading (off the hub), or None when it is missing."""
        try:
            path = self.path(collection_id, record_id, name)
        except ValueError:
            return None

        def opener() -> StoredFile | None:
            try:
                handle = path.open("rb")
            except OSError:
                return None
            try:
                stat = os.fstat(handle.fileno())
                head = handle.read(SNIFF_BYTES)
                handle.seek(0)
            except OSError:
                handle.close()
                return None
            return StoredFile(stat.st_size, stat.st_mtime, sniff(head), handle)

        return runtime.run_blocking(opener)


def iter_file(stored: StoredFile) -> Iterator[bytes]:
    """The file's bytes in ``CHUNK_SIZE`` chunks, each read off the hub; closes it at the end
    (or when the consumer stops early)."""
    handle = stored.handle
    try:
        for _ in range(stored.size // CHUNK_SIZE + 2):
            chunk = runtime.run_blocking(lambda: handle.read(CHUNK_SIZE))
            if not chunk:
                return
            yield chunk
    finally:
        handle.close()
