"""Server-Sent Events framing (writer) and event-stream parsing (reader).

This module is pure: it imports only the standard library and
``realtime_flask.errors``, never Flask, Werkzeug, gevent or redis.

Rules of the writer (PocketBase's ``WriteSSE`` byte layout, PROTOCOL.md §2.2):

1. Fields are written in this order: ``id:``, ``event:``, ``retry:``, one
   ``data:`` line per line of the payload, then one blank line.  Fields that
   are ``None`` are not written.
2. There is no space after the colon (``id:abc``).  The one exception is a
   value that itself starts with a space: then one extra space is written
   (``data:  x``), because parsers strip exactly one optional leading space and
   the value must survive the round trip.
3. A ``str`` payload is sent as text, split on ``\\r\\n``, lone ``\\r`` and
   ``\\n`` (in that precedence), one ``data:`` line per piece.  Any other
   payload is compact JSON on a single line (:func:`encode_json`).
4. A CR, LF or NUL inside an ``event`` or ``id`` raises
   :class:`~realtime_flask.errors.SSEFormatError`; it is never stripped
   silently, because it would inject fields into the stream.
5. Lines end with ``\\n`` only; everything is encoded as UTF-8.

The reader (:class:`SSEParser`) follows the WHATWG "event stream
interpretation" algorithm exactly; the tests use it to check the writer.
"""

from __future__ import annotations

import codecs
import json
import re
import typing as t
from dataclasses import dataclass

from realtime_flask.errors import SSEFormatError

__all__ = [
    "JSONValue",
    "SSEMessage",
    "SSEParser",
    "ServerSentEvent",
    "encode_json",
    "format_data",
    "format_event_body",
    "format_field",
    "format_id_line",
    "format_sse_comment",
    "format_sse_message",
]

#: A value :func:`json.dumps` can write without a custom encoder.
JSONValue: t.TypeAlias = (
    bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
)

#: One line break as the SSE spec defines it: CRLF, lone CR or LF (CRLF first).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

_BOM = "\ufeff"


def _split_lines(text: str) -> list[str]:
    """Split ``text`` on CRLF, lone CR and LF; ``""`` gives ``[""]``."""
    return _LINE_BREAK.split(text)


def _check_name_value(field: str, value: str) -> None:
    """Reject an ``event``/``id`` value that would break the stream."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise SSEFormatError(f"sse {field} must not contain a newline or NUL character: {value!r}")


def _check_retry(retry: object) -> None:
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise SSEFormatError(f"sse retry must be a non-negative integer: {retry!r}")


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One SSE frame to write.

    ``data`` is sent as text when it is a ``str`` and as compact JSON otherwise.
    ``event``, ``id`` and ``retry`` are left out of the frame when ``None``.
    Invalid values raise :class:`~realtime_flask.errors.SSEFormatError` here,
    at construction, not when the frame is written.
    """

    data: object
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        if self.event is not None:
            _check_name_value("event", self.event)
        if self.id is not None:
            _check_name_value("id", self.id)
        if self.retry is not None:
            _check_retry(self.retry)


def encode_json(value: object) -> str:
    """Serialise ``value`` as compact, single-line JSON.

    Non-ASCII text is kept as is (it is written as UTF-8), unless the result
    cannot be encoded as UTF-8 (a lone surrogate), in which case everything
    non-ASCII is ``\\uXXXX``-escaped instead.  NaN and infinities (and circular
    references) raise :class:`~realtime_flask.errors.SSEFormatError`; a value
    :mod:`json` cannot serialise at all raises :class:`TypeError` as usual.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise SSEFormatError(f"sse data cannot be written as json: {exc}") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text


def format_field(name: str, value: str) -> bytes:
    """One ``name:value\\n`` line, UTF-8 encoded.

    No space is written after the colon unless ``value`` starts with a space;
    then one extra space is written so that a parser, which strips one, gets
    ``value`` back.  A CR or LF in ``value`` raises
    :class:`~realtime_flask.errors.SSEFormatError` (NUL is allowed here; only
    ``event`` and ``id`` reject it).
    """
    if not name or ":" in name or "\r" in name or "\n" in name:
        raise SSEFormatError(f"sse field name must be non-empty without ':' or newline: {name!r}")
    if "\r" in value or "\n" in value:
        raise SSEFormatError(f"sse {name} value must not contain a newline: {value!r}")
    sep = ": " if value.startswith(" ") else ":"
    return f"{name}{sep}{value}\n".encode()


def format_data(data: object) -> bytes:
    """The ``data:`` lines of a frame (without the closing blank line).

    A ``str`` gives one line per line of text (``""`` gives ``data:\\n`` and a
    trailing newline gives a last empty ``data:`` line); anything else gives one
    line of :func:`encode_json`.
    """
    if isinstance(data, str):
        return b"".join(format_field("data", piece) for piece in _split_lines(data))
    return format_field("data", encode_json(data))


def format_retry(milliseconds: int) -> bytes:
    """A frame with only a ``retry:`` field: the client's reconnection delay, no event.

    :raises SSEFormatError: ``milliseconds`` is not a non-negative integer.
    """
    _check_retry(milliseconds)
    return format_field("retry", str(milliseconds)) + b"\n"


def format_id_line(id: str) -> bytes:
    """The ``id:`` line of a frame, validated like :attr:`SSEMessage.id`."""
    _check_name_value("id", id)
    return format_field("id", id)


def format_event_body(event: str, data: object) -> bytes:
    """A whole frame *without* its ``id:`` line: ``event:``, data lines, blank line.

    The manager encodes a body once, shares the bytes among clients and puts
    each client's :func:`format_id_line` in front:
    ``format_id_line(i) + format_event_body(e, d)`` equals
    ``format_sse_message(SSEMessage(data=d, event=e, id=i))``.
    """
    _check_name_value("event", event)
    return format_field("event", event) + format_data(data) + b"\n"


def format_sse_message(message: SSEMessage) -> bytes:
    """The bytes of one frame: ``id:``, ``event:``, ``retry:``, data lines, blank line."""
    parts: list[bytes] = []
    if message.id is not None:
        parts.append(format_field("id", message.id))
    if message.event is not None:
        parts.append(format_field("event", message.event))
    if message.retry is not None:
        parts.append(format_field("retry", str(message.retry)))
    parts.append(format_data(message.data))
    parts.append(b"\n")
    return b"".join(parts)


def format_sse_comment(comment: str = "") -> bytes:
    """A comment frame: ``:comment\\n\\n``; a multi-line comment gives one ``:`` line per line."""
    lines = b"".join(f":{piece}\n".encode() for piece in _split_lines(comment))
    return lines + b"\n"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event dispatched by :class:`SSEParser`.

    ``event`` is ``"message"`` when the block had no (or an empty) ``event``
    field; ``id`` is the last event ID at dispatch time (``""`` if never set);
    ``retry`` is the valid ``retry`` value seen in this block, else ``None``.
    """

    event: str
    data: str
    id: str
    retry: int | None = None


class SSEParser:
    """Incremental parser for ``text/event-stream`` bytes (WHATWG HTML §9.2.6).

    Feed it bytes split anywhere, even inside a CRLF pair or a UTF-8 character;
    :meth:`feed` returns the events completed by that chunk.  A block not yet
    closed by a blank line is kept until it is.  Comment lines are counted in
    :attr:`comment_count`.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True
        self._skip_lf = False
        self._pending: list[str] = []
        self._data: list[str] = []
        self._event_type = ""
        self._id_buffer = ""
        self._last_event_id = ""
        self._retry: int | None = None
        self._block_retry: int | None = None
        #: Number of comment lines (``:...``) seen so far, e.g. keep-alives.
        self.comment_count = 0

    @property
    def last_event_id(self) -> str:
        """The last event ID string as of the last dispatch (``""`` at first)."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time in ms from the last valid ``retry`` field, if any."""
        return self._retry

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse ``chunk`` and return the events it completes, in order."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            if text.startswith(_BOM):
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[ServerSentEvent] = []
        start = 0
        for match in _LINE_BREAK.finditer(text):
            line = text[start : match.start()]
            if self._pending:
                self._pending.append(line)
                line = "".join(self._pending)
                self._pending.clear()
            self._process_line(line, events)
            start = match.end()
        if start < len(text):
            self._pending.append(text[start:])
        # A CR at the very end already ended its line; an LF that may follow
        # in the next chunk belongs to it and must not end another line.
        self._skip_lf = text.endswith("\r")
        return events

    def _process_line(self, line: str, events: list[ServerSentEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            self.comment_count += 1
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
            self._data.append("\n")
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # Only ASCII digits count (str.isdigit alone accepts e.g. U+0661).
            # "".isdigit() is False, so an empty value is ignored too.
            self._retry = self._block_retry = int(value)
        # Any other field name, and a retry value that is not all digits, is ignored.

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        self._last_event_id = self._id_buffer
        retry, self._block_retry = self._block_retry, None
        if not self._data:
            self._event_type = ""
            return
        data = "".join(self._data)
        if data.endswith("\n"):
            data = data[:-1]
        events.append(
            ServerSentEvent(
                event=self._event_type or "message",
                data=data,
                id=self._last_event_id,
                retry=retry,
            )
        )
        self._data.clear()
        self._event_type = ""
