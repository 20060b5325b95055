"""The concurrency seam: both ClientQueue flavours, and the peer-EOF watch.

The queue cases live in ``isolated/cases_client_queue.py`` and run in a fresh
interpreter (``test_isolated.py``), because importing gevent changes what the
library decides for the rest of a process.  The peer-EOF watch needs a patched process and runs in a
fresh interpreter too.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from realtime_flask import runtime
from tests.support.env import REPO_ROOT

ROOT = REPO_ROOT


@pytest.mark.skipif(
    runtime.gevent_active(),
    reason="this session is gevent-patched (tests/unit/test_under_gevent.py)",
)
def test_new_client_queue_is_the_thread_flavour_without_patching() -> None:
    assert not runtime.gevent_active()
    assert isinstance(runtime.new_client_queue(4), runtime._ThreadClientQueue)
    assert runtime.watch_peer_eof(object(), lambda: None) is None


PEER_EOF_SCRIPT = r"""
from gevent import monkey
monkey.patch_all()
import json, socket
import gevent, gevent.event
from realtime_flask import runtime
from tests.support.env import REPO_ROOT
from tests.support.env import REPO_ROOT

out = {"active": runtime.gevent_active(),
       "queue": type(runtime.new_client_queue(4)).__name__}
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
results = {}
for case in ("eof", "data", "stopped"):
    peer = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    fired = gevent.event.Event()
    stop = runtime.watch_peer_eof(conn, fired.set)
    if case == "stopped":
        stop()
    if case == "data":
        peer.sendall(b"GET / HTTP/1.1\r\n\r\n")  # a pipelined request: not an EOF
    else:
        peer.close()
    results[case] = fired.wait(timeout=0.5 if case != "eof" else 10)
    if case == "data":
        results["data_unread"] = conn.recv(3) == b"GET"  # the peek consumed nothing
        peer.close()
    stop()
    stop()  # idempotent
    conn.close()
out["fired"] = results
print(json.dumps(out))
"""


def test_peer_eof_watch_fires_on_close_only() -> None:
    """Under patching: EOF fires the callback; a pipelined request does not and is
    left unread; a stopped watch never fires."""
    out = subprocess.run(
        [sys.executable, "-c", PEER_EOF_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "active": True,
        "queue": "_GeventClientQueue",
        "fired": {"eof": True, "data": False, "data_unread": True, "stopped": False},
    }


def test_tune_gc_freezes_start_up_objects_and_collects_the_young_less_often() -> None:
    code = (
        "import gc, json\n"
        "from realtime_flask.runtime import GC_YOUNG_THRESHOLD, tune_gc\n"
        "before = gc.get_threshold()\n"
        "tune_gc()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count(), GC_YOUNG_THRESHOLD]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    before, after, frozen, young = json.loads(out.stdout)
    assert after == [young, before[1], before[2]]
    assert frozen > 1000  # the modules and everything else built so far
