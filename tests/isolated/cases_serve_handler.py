"""``realtime_flask.server.serve``'s handler, in process: one write for head and first chunk.

Run by tests/unit/test_isolated.py in a fresh interpreter: importing gevent changes
what the library decides for the rest of a process.
"""

from __future__ import annotations

import io
import socket
import typing as t
from collections.abc import Callable
from collections.abc import Iterable

import pytest
from gevent.pywsgi import WSGIHandler
from gevent.pywsgi import WSGIServer

from realtime_flask.server.serve import _Handler

StartResponse = Callable[[str, list[tuple[str, str]]], object]
WSGIApp = Callable[[dict[str, t.Any], StartResponse], Iterable[bytes]]


class RecordingSocket:
    """Stands in for an accepted connection: records every write and option."""

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.family = family
        self.writes: list[bytes] = []
        self.options: list[tuple[int, int, int]] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if self.family not in (socket.AF_INET, socket.AF_INET6):
            raise OSError("not a TCP socket")
        self.options.append((level, option, value))

    def close(self) -> None:
        pass


def _fixed_response(status: str, body: Iterable[bytes]) -> WSGIApp:
    def app(environ: dict[str, t.Any], start_response: StartResponse) -> Iterable[bytes]:
        # A fixed Date, so two handlers' bytes can be compared exactly.
        start_response(status, [("Content-Type", "text/plain"), ("Date", "fixed")])
        return body

    return app


def _generated(environ: dict[str, t.Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Date", "fixed")])
    yield b"event:PB_CONNECT\n\n"
    yield b"event:next\n\n"


def _handle(
    handler_class: type[t.Any], app: WSGIApp, requests: int = 2, family: int = socket.AF_INET
) -> RecordingSocket:
    """Run ``requests`` kept-alive GETs through one handler of ``handler_class``."""
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=handler_class, log=None)
    sock = RecordingSocket(family)
    raw = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n" * requests
    handler_class(sock, ("127.0.0.1", 40000), server, rfile=io.BytesIO(raw)).handle()
    return sock


@pytest.mark.parametrize(
    ("app", "writes_per_response"),
    [
        (_fixed_response("200 OK", [b'{"ok":true}']), 1),  # head + body: one write
        (_fixed_response("204 No Content", []), 1),  # head alone
        (_fixed_response("200 OK", [b"a", b"b"]), 2),  # head + a, then b
        (_generated, 3),  # chunked: head + first chunk, next chunk, last-chunk marker
    ],
    ids=["one-body-chunk", "no-body", "two-body-chunks", "chunked-stream"],
)
def test_serve_handler_sends_head_with_first_chunk(app: WSGIApp, writes_per_response: int) -> None:
    ours = _handle(_Handler, app)
    gevents = _handle(WSGIHandler, app)
    # The same bytes on the wire as gevent's own handler, in fewer writes.
    assert b"".join(ours.writes) == b"".join(gevents.writes)
    assert len(ours.writes) == 2 * writes_per_response
    assert ours.writes[0].startswith(b"HTTP/1.1 ")
    assert ours.options == [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def test_serve_handler_leaves_non_tcp_sockets_alone() -> None:
    sock = _handle(_Handler, _fixed_response("200 OK", [b"x"]), family=socket.AF_UNIX)
    assert sock.options == []
    assert len(sock.writes) == 2
