"""Plain requests stay fast on kept-alive connections: no Nagle wait behind a delayed ACK.

A server that writes a response in two pieces on a socket with Nagle's
algorithm on holds the second piece until the client ACKs the first; a client
that has nothing to send delays that ACK (~40 ms on Linux) on every request
after the first on a connection.  Every server the project starts therefore
has ``TCP_NODELAY`` on its accepted connections, checked here on the server's
side of the very connection the test opened (``tests/support/nodelay_app.py``), and
``realtime_flask.server.serve`` sends the response head with the first body chunk
(``isolated/cases_serve_handler.py``).
"""

from __future__ import annotations

import http.client
import json
import shlex
import sys
import typing as t
from collections.abc import Callable
from collections.abc import Iterable

import pytest

from tests.support.entry_points import EntryPoint
from tests.support.entry_points import clean_env
from tests.support.servers import REPO_ROOT

StartResponse = Callable[[str, list[tuple[str, str]]], object]
WSGIApp = Callable[[dict[str, t.Any], StartResponse], Iterable[bytes]]


def _serve_py(port: int) -> list[str]:
    # realtime_flask.server.serve, as `python wsgi.py` and `python -m realtime_flask serve` use it.
    return [sys.executable, "-m", "tests.support.nodelay_app", str(port)]


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
        "tests.support.nodelay_app:app",
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
