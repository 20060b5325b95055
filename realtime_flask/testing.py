"""Read the next N events of an endless SSE stream, with a deadline, in tests.

An event stream never ends, so ``for chunk in response`` hangs a test forever
once the events you expected fail to come.  These readers stop at a deadline
and raise ``TimeoutError`` listing what they did receive.

* ``HTTPEventStream``: a real HTTP connection (gunicorn, ``python wsgi.py``);
  the deadline is enforced with socket timeouts, so it never hangs.
* ``TestEventStream``: a Flask test-client response (``buffered=False``); the
  app iterator is pulled in the calling thread, so the deadline is checked
  between chunks: give the app a short ``REALTIME_KEEPALIVE_INTERVAL`` (the
  keep-alive comments hand control back) and it never hangs either.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import time
import typing as t
from collections import deque
from collections.abc import Iterable
from collections.abc import Iterator

from realtime_flask.core.sse import ServerSentEvent
from realtime_flask.core.sse import SSEParser

__all__ = ["EventStream", "HTTPEventStream", "TestEventStream", "post_subscriptions"]


class EventStream:
    """Parsed events from a chunk source, read with deadlines."""

    def __init__(self, read_chunk: t.Callable[[float], bytes | None]) -> None:
        self._read_chunk = read_chunk
        self._parser = SSEParser()
        self._pending: deque[ServerSentEvent] = deque()
        self.raw = bytearray()  #: every byte received, for exact-bytes assertions
        self.ended = False

    @property
    def retry(self) -> int | None:
        """The last ``retry:`` the server sent (milliseconds), or None."""
        return self._parser.retry

    @property
    def comment_count(self) -> int:
        """Comment lines (keep-alives) seen so far."""
        return self._parser.comment_count

    def next_events(self, n: int, timeout: float = 5.0) -> list[ServerSentEvent]:
        """The next ``n`` events; TimeoutError if they do not all arrive in time."""
        deadline = time.monotonic() + timeout
        out: list[ServerSentEvent] = []
        while len(out) < n:
            if self._pending:
                out.append(self._pending.popleft())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.ended:
                why = "stream ended" if self.ended else f"no event within {timeout}s"
                raise TimeoutError(f"{why}: wanted {n} events, got {len(out)}: {out!r}")
            chunk = self._read_chunk(remaining)
            if chunk is None:  # source timed out
                continue
            if not chunk:
                self.ended = True
                continue
            self.raw += chunk
            self._pending.extend(self._parser.feed(chunk))
        return out

    def next_event(self, timeout: float = 5.0) -> ServerSentEvent:
        return self.next_events(1, timeout)[0]

    def wait_closed(self, timeout: float = 5.0) -> list[ServerSentEvent]:
        """Read until the server ends the stream; returns the events seen meanwhile."""
        deadline = time.monotonic() + timeout
        seen: list[ServerSentEvent] = list(self._pending)
        self._pending.clear()
        while not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"stream still open after {timeout}s")
            chunk = self._read_chunk(remaining)
            if chunk is None:
                continue
            if not chunk:
                self.ended = True
                break
            self.raw += chunk
            seen.extend(self._parser.feed(chunk))
        return seen


class HTTPEventStream(EventStream):
    """``GET`` an SSE endpoint over a real socket.

    The HTTP/1.1 response is read straight off the socket (status line,
    headers, then the chunked body decoded incrementally), so a read that
    times out leaves the stream usable for the next one.  ``ended_cleanly``
    turns true when the server finished the body with its last chunk, as
    opposed to a cut connection.

    :param source_address: bind the client socket (e.g. ``("127.0.0.2", 0)``)
        to appear from another loopback address.
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/api/realtime",
        *,
        headers: t.Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=connect_timeout, source_address=source_address
        )
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._buffer = bytearray()
        self._chunk_left = 0  # bytes left in the current chunk
        self._chunked = False
        self.ended_cleanly = False
        head = self._read_head(connect_timeout)
        status_line, _, header_block = head.partition(b"\r\n")
        self.version, status, *_ = status_line.decode("latin-1").split(" ", 2)
        self.status = int(status)
        self.headers: http.client.HTTPMessage = http.client.parse_headers(
            io.BytesIO(header_block + b"\r\n")
        )
        self._chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        super().__init__(self._read)

    def _recv(self, timeout: float) -> bytes | None:
        try:
            self.sock.settimeout(max(timeout, 0.001))  # EBADF once closed: the stream ended
            return self.sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return b""

    def _read_head(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._buffer:
            data = self._recv(deadline - time.monotonic())
            if not data:
                raise (
                    TimeoutError("no complete response head")
                    if data is None
                    else ConnectionError("connection closed before the response head")
                )
            self._buffer += data
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        return head

    def _read(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            body = self._decode()
            if body or self.ended_cleanly:
                return body
            data = self._recv(deadline - time.monotonic())
            if data is None or not data:
                return data
            self._buffer += data

    def _decode(self) -> bytes:
        """Body bytes available in the buffer (chunk framing removed)."""
        if not self._chunked:
            raw = bytes(self._buffer)
            self._buffer.clear()
            return raw
        out = bytearray()
        while self._buffer:
            if self._chunk_left:
                take = min(self._chunk_left, len(self._buffer))
                out += self._buffer[:take]
                del self._buffer[:take]
                self._chunk_left -= take
                continue
            if self._buffer.startswith(b"\r\n"):
                del self._buffer[:2]
                continue
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(bytes(self._buffer[:line_end]).split(b";")[0], 16)
            if size == 0:
                self.ended_cleanly = True
                self._buffer.clear()
                break
            del self._buffer[: line_end + 2]
            self._chunk_left = size
        return bytes(out)

    def abort(self) -> None:
        """Drop the TCP connection abruptly (RST), as a crashed client would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HTTPEventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TestEventStream(EventStream):
    """Events of a Flask test-client streaming response (``buffered=False``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, response: t.Any) -> None:
        self.response = response
        self._chunks: Iterator[bytes] = iter(t.cast(Iterable[bytes], response.response))
        super().__init__(self._read)

    def _read(self, timeout: float) -> bytes | None:
        try:
            return next(self._chunks)
        except StopIteration:
            return b""

    def close(self) -> None:
        self.response.close()


def post_subscriptions(
    host: str,
    port: int,
    client_id: str | None,
    subscriptions: list[str] | None,
    *,
    headers: t.Mapping[str, str] | None = None,
    timeout: float = 10.0,
    source_address: tuple[str, int] | None = None,
) -> tuple[int, t.Any]:
    """``POST /api/realtime``; returns (status, parsed JSON body or None)."""
    body: dict[str, object] = {}
    if client_id is not None:
        body["clientId"] = client_id
    if subscriptions is not None:
        body["subscriptions"] = subscriptions
    return request_json(
        host,
        port,
        "POST",
        "/api/realtime",
        body,
        headers=headers,
        timeout=timeout,
        source_address=source_address,
    )


def request_json(
    host: str,
    port: int,
    method: str,
    path: str,
    body: object = None,
    *,
    headers: t.Mapping[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 10.0,
    source_address: tuple[str, int] | None = None,
) -> tuple[int, t.Any]:
    """One HTTP request; returns (status, parsed JSON body or None when empty)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=source_address)
    try:
        send_headers = {"Content-Type": "application/json", **(headers or {})}
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=send_headers)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, (json.loads(payload) if payload else None)
    finally:
        conn.close()
