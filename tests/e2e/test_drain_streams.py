"""1,000 open streams and a SIGTERM (issue #10): no reconnect storm, a clean exit.

A real ``gunicorn -k gevent -w 1`` holds 1,000 streams.  On SIGTERM of the master
every stream gets a ``retry:`` drawn from ``REALTIME_DRAIN_WINDOW`` and ends;
the values spread over the window (so EventSources come back spread out, not
within 0.65 s of each other as before), and the master exits with 0.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import statistics
import time
import typing as t

import pytest

from tests.support.servers import GunicornServer

STREAMS: t.Final = 1000
WINDOW: t.Final = 5.0
WAIT: t.Final = 60.0
RETRY = re.compile(rb"\nretry:(\d+)\n")


def open_streams(host: str, port: int, count: int) -> dict[socket.socket, bytearray]:
    """``count`` streams, each read up to its PB_CONNECT."""
    streams: dict[socket.socket, bytearray] = {}
    selector = selectors.DefaultSelector()
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(f"GET /api/realtime HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.setblocking(False)
        streams[sock] = bytearray()
        selector.register(sock, selectors.EVENT_READ)
    waiting = set(streams)
    deadline = time.monotonic() + WAIT
    while waiting and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            sock = t.cast(socket.socket, key.fileobj)
            streams[sock] += sock.recv(65536)
            if b"PB_CONNECT" in streams[sock] and b"\n\n" in streams[sock].split(b"PB_CONNECT")[1]:
                waiting.discard(sock)
    selector.close()
    assert not waiting, f"{len(waiting)} streams got no PB_CONNECT"
    return streams


def read_to_end(streams: dict[socket.socket, bytearray]) -> dict[socket.socket, float]:
    """Read every stream until EOF; the monotonic time each one ended."""
    selector = selectors.DefaultSelector()
    for sock in streams:
        selector.register(sock, selectors.EVENT_READ)
    ended: dict[socket.socket, float] = {}
    deadline = time.monotonic() + WAIT
    while len(ended) < len(streams) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            sock = t.cast(socket.socket, key.fileobj)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                streams[sock] += chunk
            else:
                ended[sock] = time.monotonic()
                selector.unregister(sock)
    selector.close()
    return ended


@pytest.mark.timeout(300)
def test_a_thousand_streams_drain_with_spread_retries_and_a_clean_exit() -> None:
    env = {"REALTIME_DRAIN_WINDOW": str(WINDOW)}
    server = GunicornServer(
        workers=1, env=env, extra_args=["--worker-connections", str(STREAMS + 50)]
    )
    with server:
        streams = open_streams(server.host, server.port, STREAMS)
        os.kill(server.pid, signal.SIGTERM)  # the master this test started
        ended = read_to_end(streams)
        assert len(ended) == STREAMS, f"{STREAMS - len(ended)} streams still open"
        log = server.log_path.read_text()
        code = server.stop(timeout=WAIT)  # waits for the exit the SIGTERM started
        assert code == 0, log[-3000:]
        retries = []
        for data in streams.values():
            found = RETRY.findall(bytes(data))
            assert len(found) == 1, bytes(data)[-300:]
            retries.append(int(found[0]) / 1000)
        for sock in streams:
            sock.close()
    assert min(retries) >= 0.25 and max(retries) <= WINDOW
    # Spread over the window, not bunched: each fifth of it holds 10-30 % of them.
    fifths = [
        sum(1 for r in retries if k * WINDOW / 5 <= r < (k + 1) * WINDOW / 5) for k in range(5)
    ]
    assert all(0.10 * STREAMS <= n <= 0.30 * STREAMS for n in fifths), fifths
    assert statistics.pstdev(retries) > WINDOW / 5
