"""A slow list query against the whole app, served for real: what else keeps working.

Used twice: by ``tests/support/gevent_app.py`` in a gevent-patched interpreter
(gevent's WSGIServer, greenlets) and by ``tests/unit/web/test_off_hub.py`` with
plain threads (Werkzeug's threaded server).  The code is the same; only the
server and what a "thread" is differ.

The slow query is made deterministic with SQLite's progress handler, set on
every connection the store opens: once armed, the next statement to run
signals ``started`` and then holds until the scenario releases it; after that
it crawls (5 ms per ``STEPS`` VM steps, far past the time limit) until
something interrupts it: only the store's query time limit does.  No sleep is used to
wait for anything; the scenario waits on pipes and responses.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import select
import socket
import sqlite3
import sys
import threading
import typing as t
from collections.abc import Callable
from urllib.parse import quote

from realtime_flask.store import records
from realtime_flask.store import sql

WAIT: t.Final = 30.0
#: SQLite VM steps between two calls of the progress handler: the list query over
#: the seeded rows makes thousands of calls, 5 ms each once released, so it
#: runs far past the 1 s time limit unless interrupted.
STEPS: t.Final = 100
SLOW_FILTER: t.Final = "title ~ 'zzzq' || body ~ 'q'"


class SlowStatement:
    """The progress handler that makes the next statement slow (see the module docstring)."""

    def __init__(self, real_sleep: Callable[[float], None], real_ident: Callable[[], int]) -> None:
        self._sleep = real_sleep
        self._ident = real_ident
        self.armed = False
        self.thread: int | None = None
        self.started = os.pipe()
        self.release = os.pipe()

    def progress(self) -> int:
        me = self._ident()
        if self.armed:
            self.armed = False
            self.thread = me
            os.write(self.started[1], b"x")
            os.read(self.release[0], 1)  # on the pool (or request) thread: blocks only it
        elif self.thread == me:
            self._sleep(0.005)
        return 0  # never stops the statement itself

    def install(self) -> Callable[[sqlite3.Connection], None]:
        """Every connection the store opens from now on gets the handler; returns
        the store's own ``configure``, for ``uninstall``."""

        def configure(conn: sqlite3.Connection) -> None:
            sql.configure(conn)
            conn.set_progress_handler(self.progress, STEPS)

        previous: Callable[[sqlite3.Connection], None] = vars(records)["configure"]
        vars(records)["configure"] = configure
        return previous

    @staticmethod
    def uninstall(previous: Callable[[sqlite3.Connection], None]) -> None:
        vars(records)["configure"] = previous


def wait_readable(fd: int) -> bool:
    """Wait for a byte on ``fd`` (cooperative under gevent: select is patched)."""
    readable, _, _ = select.select([fd], [], [], WAIT)
    if readable:
        os.read(fd, 1)
    return bool(readable)


def request(
    port: int, method: str, path: str, body: object = None, source: str = "127.0.0.1"
) -> tuple[int, t.Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT, source_address=(source, 0))
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


class Stream:
    """One realtime client: ``GET /api/realtime``, then subscribed to ``topics``."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock.sendall(
            b"GET /api/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        self.buffer = b""
        name, data = self.next_event()
        assert name == "PB_CONNECT", name
        status, _ = request(
            port, "POST", "/api/realtime", {"clientId": data["clientId"], "subscriptions": topics}
        )
        assert status == 204, status

    def next_event(self) -> tuple[str, t.Any]:
        while True:
            head, sep, rest = self.buffer.partition(b"\n\n")
            if sep:
                self.buffer = rest
                fields = dict(
                    line.split(":", 1) for line in head.decode().splitlines() if ":" in line
                )
                if "event" in fields:
                    return fields["event"].strip(), json.loads(fields["data"].strip())
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("stream closed")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def seed(data_dir: str, rows: int) -> None:
    """``rows`` posts written straight into SQLite, so the list query has work to do."""
    from realtime_flask.core.schema import default_schema
    from realtime_flask.store.records import RecordStore

    store = RecordStore(default_schema(), os.path.join(data_dir, "data.db"))
    store.close()
    db = sqlite3.connect(os.path.join(data_dir, "data.db"))
    db.executemany(
        "INSERT INTO posts (id, title, body) VALUES (?, ?, ?)",
        ((f"seed{n:011d}", f"title {n}", f"body {n}") for n in range(rows)),
    )
    db.commit()
    db.close()


def config(data_dir: str) -> dict[str, object]:
    return {
        "REALTIME_DATA_DIR": data_dir,
        "REALTIME_QUERY_TIMEOUT": 1.0,
        "REALTIME_DB_READERS": 2,  # one client address may hold one of them
        "REALTIME_REAPER_ENABLED": False,
    }


def slow_query_scenario(
    port: int, slow: SlowStatement, spawn: Callable[[Callable[[], object]], t.Any]
) -> dict[str, object]:
    """What answers while one list query is held inside SQLite, then what it answers.

    ``spawn(fn)`` runs ``fn`` concurrently and returns something with
    ``.result()`` (``wait``) and ``.done()``.
    """
    stream = Stream(port, ["posts/*"])
    slow.armed = True
    path = f"/api/collections/posts/records?perPage=50&sort=-body,title&filter={quote(SLOW_FILTER)}"
    slow_list = spawn(lambda: request(port, "GET", path))
    started = wait_readable(slow.started[0])
    # The list query is now inside SQLite and stays there until released.
    health, _ = request(port, "GET", "/api/health")
    created_status, created = request(
        port, "POST", "/api/collections/posts/records", {"title": "x"}
    )
    name, event = stream.next_event()
    event_ok = (
        name == "posts/*" and event["action"] == "create" and event["record"]["id"] == created["id"]
    )
    get_status, _ = request(port, "GET", f"/api/collections/posts/records/{created['id']}")
    other_client, _ = request(
        port, "GET", "/api/collections/posts/records?perPage=1", source="127.0.0.2"
    )
    held_meanwhile = not slow_list.done()
    os.write(slow.release[1], b"x")
    slow_status, slow_body = slow_list.result()
    slow.thread = None
    after, _ = request(port, "GET", "/api/collections/posts/records?perPage=1")
    stream.close()
    return {
        "slow_statement_started": started,
        "health_meanwhile": health,
        "create_meanwhile": created_status,
        "event_meanwhile": event_ok,
        "get_one_meanwhile": get_status,
        "other_client_list_meanwhile": other_client,
        "slow_query_still_running": held_meanwhile,
        "slow_query_status": slow_status,
        "slow_query_body": slow_body,
        "list_after": after,
    }


def leak_scenario(
    port: int, count_alive: Callable[[], int], requests: int = 1000
) -> dict[str, int]:
    """Greenlets or threads alive after a warm-up, and after ``requests`` more
    mixed requests."""

    def mixed(n: int) -> None:
        kind = n % 6
        if kind == 0:
            request(port, "GET", "/api/health")
        elif kind == 1:
            request(
                port,
                "GET",
                "/api/collections/posts/records?perPage=5&filter=" + quote("title ~ 'title 1'"),
            )
        elif kind == 2:
            request(port, "POST", "/api/collections/posts/records", {"title": f"leak {n}"})
        elif kind == 3:
            request(port, "GET", "/api/collections/posts/records/seed00000000001")
        elif kind == 4:
            request(port, "GET", "/api/collections/posts/records/missing")
        else:
            request(port, "GET", "/api/collections/posts/records?filter=" + quote("title ~"))

    for n in range(120):
        mixed(n)
    gc.collect()
    before = count_alive()
    for n in range(requests):
        mixed(n)
    gc.collect()
    return {"alive_after_warm_up": before, "alive_after": count_alive()}


def threads_alive() -> int:
    """OS threads of this process (real ones, even under gevent's patching)."""
    return len(sys._current_frames())


def store_threads_alive() -> int:
    """Threads the store and the runtime started (plain-thread flavour: ``realtime-*``)."""
    return sum(1 for th in threading.enumerate() if th.name.startswith("realtime-"))


def spawn_thread(fn: Callable[[], object]) -> t.Any:
    """``spawn`` for plain threads."""

    class Job:
        def __init__(self) -> None:
            self.value: object = None
            self.thread = threading.Thread(target=self.run, daemon=True)
            self.thread.start()

        def run(self) -> None:
            self.value = fn()

        def done(self) -> bool:
            return not self.thread.is_alive()

        def result(self) -> object:
            self.thread.join(WAIT)
            return self.value

    return Job()
