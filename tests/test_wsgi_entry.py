"""``python wsgi.py``: the README's first command, as a newcomer runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import request_json

from .servers import free_port
from .servers import wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_python_wsgi_py_serves_pb_connect_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REALTIME_PORT": str(port),
        "REALTIME_PUBLISH_SECRET": "s",
        "REALTIME_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "wsgi.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: _answers(port), timeout=15)
        with HTTPEventStream("127.0.0.1", port) as stream:
            assert stream.status == 200
            event = stream.next_event(timeout=5)
            assert event.event == "PB_CONNECT"
            assert bytes(stream.raw).startswith(f"id:{event.id}\nevent:PB_CONNECT\n".encode())
            status, _ = request_json(
                "127.0.0.1",
                port,
                "POST",
                "/api/realtime",
                {"clientId": event.id, "subscriptions": ["posts/*"]},
            )
            assert status == 204
            status, body = request_json(
                "127.0.0.1",
                port,
                "POST",
                "/api/realtime/publish",
                {"collection": "posts", "action": "create", "record": {"id": "a"}},
                headers={"Authorization": "Bearer s"},
            )
            assert status == 200, body
            assert stream.next_event(timeout=5).event == "posts/*"
            proc.send_signal(signal.SIGTERM)
            stream.wait_closed(timeout=10)  # the stream ends cleanly on shutdown
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
