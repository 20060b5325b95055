"""Plain requests stay fast on kept-alive connections: no Nagle wait behind a delayed ACK.

A server that writes a response in two pieces on a socket with Nagle's
algorithm on holds the second piece until the client ACKs the first; a client
that has nothing to send delays that ACK (~40 ms on Linux) on every request
after the first on a connection.  Every server the project starts therefore
has ``TCP_NODELAY`` on its accepted connections, checked here on the server's
side of the very connection the test opened (``tests/nodelay_app.py``), and
``realtime_flask.serve`` sends the response head with the first body chunk.
"""

from __future__ import annotations

import http.client
import io
import json
import shlex
import socket
import sys
import typing as t
from collections.abc import Callable
from collections.abc import Iterable

import pytest
from gevent.pywsgi import WSGIHandler
from gevent.pywsgi import WSGIServer

from realtime_flask.serve import _Handler

from .entry_points import EntryPoint
from .entry_points import clean_env
from .servers import REPO_ROOT

StartResponse = Callable[[str, list[tuple[str, str]]], object]
WSGIApp = Callable[[dict[str, t.Any], StartResponse], Iterable[bytes]]


def _serve_py(port: int) -> list[str]:
    # realtime_flask.serve, as `python wsgi.py` and `python -m realtime_flask serve` use it.
    return [sys.executable, "-m", "tests.nodelay_app", str(port)]


def _gunicorn(port: int) -> list[str]:
    # From the repository root, so gunicorn.conf.py is read as in production.
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "gevent",
        "-b",
        f"127.0.0.1:{port}",
        "tests.nodelay_app:app",
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("command", [_serve_py, _gunicorn], ids=["serve", "gunicorn-k-gevent"])
def test_accepted_connections_have_tcp_nodelay(command: Callable[[int], list[str]]) -> None:
    server = EntryPoint(
        shlex.join(command(0)[1:]),
        command,
        cwd=REPO_ROOT,
        env=lambda port: clean_env({"REALTIME_DATA_DIR": ":memory:"}),
    )
    with server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            seen = []
            for _ in range(3):  # kept alive: the same connection every time
                conn.request("GET", "/_test/connection")
                response = conn.getresponse()
                assert response.status == 200, server.error(f"answered {response.status}")
                seen.append(json.loads(response.read()))
            assert conn.sock is not None
            mine = list(conn.sock.getsockname())
        finally:
            conn.close()
        assert [s["peer"] for s in seen] == [mine] * 3, "not one kept-alive connection"
        assert all(s["nodelay"] != 0 for s in seen), server.error(f"TCP_NODELAY off: {seen}")
        server.send_sigterm()
        assert server.wait_exit(timeout=15) == 0, server.error("unclean exit")


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
