"""A slow query never stalls the worker (issue #12), under gevent and with plain threads.

The whole app is served for real, on 127.0.0.1, with a list query held inside
SQLite (``tests/support/off_hub.py`` says how, without sleeps).  While it is
held: ``/api/health``, a create, its realtime event, a getOne and another
client's list query all answer.  Then the query runs past
``REALTIME_QUERY_TIMEOUT`` and answers PocketBase's 400; the next list query
works.  After 1,000 more mixed requests no greenlet or thread is left behind.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import typing as t
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from realtime_flask import runtime
from realtime_flask.web.app import create_app
from tests.support import off_hub
from tests.support.env import REPO_ROOT

TIMEOUT_BODY: t.Final = {
    "status": 400,
    "message": "Something went wrong while processing your request.",
    "data": {},
}


def expected_slow(body: object) -> dict[str, object]:
    return {
        "slow_statement_started": True,
        "health_meanwhile": 200,
        "create_meanwhile": 200,
        "event_meanwhile": True,
        "get_one_meanwhile": 200,
        "other_client_list_meanwhile": 200,
        "slow_query_still_running": True,
        "slow_query_status": 400,
        "slow_query_body": body,
        "list_after": 200,
    }


def test_under_gevent_a_slow_query_stalls_nothing_and_times_out(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.gevent_app", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["slow"] == expected_slow(TIMEOUT_BODY)
    greenlets = result["greenlets"]
    assert greenlets["alive_after"] == greenlets["alive_after_warm_up"]
    threads = result["threads"]
    assert threads["alive_after"] == threads["alive_after_warm_up"]


@pytest.fixture
def threaded_server(tmp_path: Path) -> t.Iterator[tuple[int, off_hub.SlowStatement]]:
    off_hub.seed(str(tmp_path), 3000)
    gc.collect()  # stores of earlier tests stop their threads when collected
    slow = off_hub.SlowStatement(__import__("time").sleep, threading.get_ident)
    previous = slow.install()
    server = make_server("127.0.0.1", 0, create_app(off_hub.config(str(tmp_path))), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, slow
    finally:
        server.shutdown()
        thread.join(off_hub.WAIT)
        slow.uninstall(previous)


@pytest.mark.skipif(
    runtime.gevent_active(), reason="this session is gevent-patched: the test above is its flavour"
)
def test_with_plain_threads_a_slow_query_stalls_nothing_and_times_out(
    threaded_server: tuple[int, off_hub.SlowStatement],
) -> None:
    before = off_hub.store_threads_alive()  # the app's store is built: its threads count here
    port, slow = threaded_server
    assert off_hub.slow_query_scenario(port, slow, off_hub.spawn_thread) == expected_slow(
        TIMEOUT_BODY
    )
    counts = off_hub.leak_scenario(port, off_hub.store_threads_alive)
    assert counts["alive_after"] == counts["alive_after_warm_up"]
    # Nothing beyond the timer thread (started by the first timed statement, once
    # per process) was started by the requests: the store's 5 threads were there.
    assert counts["alive_after"] - before <= 1
