"""realtime_flask.store.connections: one writer, parallel readers, per-client caps, time limits.

Run with plain threads here (the same code path as a threaded server); the
gevent flavour (statements off the hub) is ``tests/support/gevent_sqlite.py``,
run in a fresh, patched interpreter by the last test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest

from realtime_flask import runtime
from realtime_flask.errors import QueryTimeout
from realtime_flask.errors import StoreBusy
from realtime_flask.store.connections import SCAN_NICE
from realtime_flask.store.connections import Connections
from tests.support.env import REPO_ROOT

WAIT: t.Final = 10.0
#: A statement that never ends on its own (SQLite's VM loops; interrupt stops it).
ENDLESS: t.Final = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
)


class Gate:
    """SQL functions that let a test hold statements inside SQLite.

    ``hold(tag)`` records that a statement with that tag started and blocks
    until the test calls ``open()``; ``meet()`` returns 1 only if two
    statements are inside it at the same time.  They run on the store's
    threads, so they use OS locks (``runtime.native_lock``), never gevent's:
    the same gate works when this module runs under gevent's patching
    (``tests/unit/test_under_gevent.py``).
    """

    def __init__(self) -> None:
        self.started: list[str] = []
        self._gate = runtime.native_lock()
        self._gate.acquire()
        self._opened = False
        self._count = runtime.native_lock()
        self._arrived = 0
        self._sides = [runtime.native_lock(), runtime.native_lock()]
        for side in self._sides:
            side.acquire()

    def open(self) -> None:
        if not self._opened:
            self._opened = True
            self._gate.release()

    def hold(self, tag: str) -> int:
        self.started.append(tag)
        if not self._gate.acquire(timeout=WAIT):
            return 0
        self._gate.release()
        return 1

    def meet(self) -> int:
        with self._count:
            me = self._arrived
            self._arrived += 1
        self._sides[me].release()  # arrived
        other = self._sides[1 - me]
        if not other.acquire(timeout=WAIT):
            return 0
        other.release()
        return 1

    def configure(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.create_function("hold", 1, self.hold)
        conn.create_function("meet", 0, self.meet)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def db(tmp_path: Path, gate: Gate) -> Iterator[Connections]:
    conns = Connections(tmp_path / "data.db", readers=2, query_timeout=0, configure=gate.configure)
    conns.write("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER)")
    conns.write("INSERT INTO t VALUES ('a', 1), ('b', 2)")
    yield conns
    gate.open()
    conns.close()


def in_thread(fn: t.Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # noqa: BLE001 (the test inspects it)
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def wait_for(predicate: t.Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def test_two_scan_reads_run_at_the_same_time(db: Connections) -> None:
    def meet(client: str) -> t.Callable[[], object]:
        return lambda: db.read("SELECT meet()", lane="scan", client=client)

    threads = [in_thread(meet(client)) for client in "xy"]
    for thread, _ in threads:
        thread.join(WAIT)
    assert [out[0].rows for _, out in threads] == [[(1,)], [(1,)]]  # type: ignore[attr-defined]


def test_one_client_cannot_hold_every_reader(tmp_path: Path, gate: Gate) -> None:
    db = Connections(tmp_path / "d.db", readers=2, per_client=1, configure=gate.configure)
    try:
        first, _ = in_thread(lambda: db.read("SELECT hold('a1')", lane="scan", client="a"))
        wait_for(lambda: gate.started == ["a1"])
        second, second_out = in_thread(
            lambda: db.read("SELECT hold('a2')", lane="scan", client="a")
        )
        other, other_out = in_thread(lambda: db.read("SELECT hold('b1')", lane="scan", client="b"))
        wait_for(lambda: "b1" in gate.started)
        assert gate.started == ["a1", "b1"]  # a's second read waits for a's first
        gate.open()
        for thread in (first, second, other):
            thread.join(WAIT)
        assert gate.started == ["a1", "b1", "a2"]
        assert second_out[0].rows == other_out[0].rows == [(1,)]  # type: ignore[attr-defined]
    finally:
        gate.open()
        db.close()


def test_point_reads_never_queue_behind_scans(tmp_path: Path, gate: Gate) -> None:
    db = Connections(tmp_path / "d.db", readers=1, per_client=1, configure=gate.configure)
    try:
        db.write("CREATE TABLE t (id TEXT PRIMARY KEY)")
        db.write("INSERT INTO t VALUES ('a')")
        scan, _ = in_thread(lambda: db.read("SELECT hold('scan')", lane="scan", client="a"))
        wait_for(lambda: gate.started == ["scan"])
        assert db.read("SELECT id FROM t WHERE id = ?", ("a",)).rows == [("a",)]
        gate.open()
        scan.join(WAIT)
    finally:
        gate.open()
        db.close()


def test_a_statement_past_the_time_limit_is_interrupted(tmp_path: Path) -> None:
    db = Connections(tmp_path / "d.db", readers=1, query_timeout=0.05)
    try:
        with pytest.raises(QueryTimeout) as caught:
            db.read(ENDLESS, lane="scan", client="a")
        assert caught.value.to_body()["status"] == 400
        with pytest.raises(QueryTimeout):
            db.read(ENDLESS)
        # Every connection is usable afterwards, and the limit did not leak.
        assert db.read("SELECT 1", lane="scan", client="a").rows == [(1,)]
        assert db.read("SELECT 2").rows == [(2,)]
        assert db.write("SELECT 3").rows == [(3,)]
    finally:
        db.close()


def test_a_write_transaction_past_the_time_limit_is_interrupted_and_rolled_back(
    tmp_path: Path,
) -> None:
    db = Connections(tmp_path / "d.db", readers=1, query_timeout=0.05)
    try:
        db.write("CREATE TABLE t (n INTEGER)")

        def slow(conn: sqlite3.Connection) -> object:
            conn.execute("INSERT INTO t VALUES (1)")
            return conn.execute(ENDLESS).fetchall()

        with pytest.raises(QueryTimeout):
            db.transaction(slow)
        assert db.read("SELECT count(*) FROM t").rows == [(0,)]
        db.transaction(lambda conn: conn.execute("INSERT INTO t VALUES (2)"))
        assert db.read("SELECT n FROM t").rows == [(2,)]
    finally:
        db.close()


def test_readers_see_commits_not_open_transactions(db: Connections, gate: Gate) -> None:
    def insert(conn: sqlite3.Connection) -> object:
        conn.execute("INSERT INTO t VALUES ('c', 3)")
        inside = conn.execute("SELECT count(*) FROM t").fetchone()
        conn.execute("SELECT hold('tx')").fetchall()  # the transaction stays open until the gate
        return inside

    writer, out = in_thread(lambda: db.transaction(insert))
    wait_for(lambda: gate.started == ["tx"])
    assert db.read("SELECT count(*) FROM t", lane="scan").fetchone() == (2,)
    assert db.read("SELECT count(*) FROM t").fetchone() == (2,)
    gate.open()
    writer.join(WAIT)
    assert out == [(3,)]
    assert db.read("SELECT count(*) FROM t").fetchone() == (3,)


def test_a_failing_transaction_rolls_back_and_raises_to_the_caller(db: Connections) -> None:
    def half(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('c', 3)")
        raise LookupError("stop here")

    with pytest.raises(LookupError, match="stop here"):
        db.transaction(half)
    with pytest.raises(sqlite3.IntegrityError):  # a taken primary key reaches the caller as is
        db.transaction(lambda conn: conn.execute("INSERT INTO t VALUES ('a', 9)"))
    assert db.read("SELECT id, n FROM t ORDER BY id").rows == [("a", 1), ("b", 2)]


def test_writers_queue_on_the_writer_thread(db: Connections, gate: Gate) -> None:
    first, first_out = in_thread(
        lambda: db.transaction(lambda c: c.execute("SELECT hold('w1')").fetchall())
    )
    wait_for(lambda: gate.started == ["w1"])
    second, second_out = in_thread(
        lambda: db.transaction(lambda c: c.execute("SELECT hold('w2')").fetchall())
    )
    assert db.read("SELECT count(*) FROM t").fetchone() == (2,)  # reads do not wait
    assert gate.started == ["w1"]  # the second writer waits for the first
    gate.open()
    first.join(WAIT)
    second.join(WAIT)
    assert gate.started == ["w1", "w2"]
    assert first_out == second_out == [[(1,)]]


def test_a_write_lock_held_elsewhere_past_the_timeout_is_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    db = Connections(path, readers=1, write_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        db.write("CREATE TABLE t (n INTEGER)")
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy):
            db.transaction(lambda conn: conn.execute("INSERT INTO t VALUES (0)"))
        with pytest.raises(StoreBusy):
            db.write("INSERT INTO t VALUES (0)")
        other.execute("COMMIT")
        db.transaction(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
        assert db.read("SELECT n FROM t").rows == [(1,)]
    finally:
        other.close()
        db.close()


def test_an_in_memory_database_runs_on_one_connection() -> None:
    db = Connections(":memory:", readers=4)
    try:
        assert db.readers == 0
        db.write("CREATE TABLE t (n INTEGER)")
        db.write("INSERT INTO t VALUES (7)")
        assert db.read("SELECT n FROM t", lane="scan", client="a").rows == [(7,)]
        assert db.read("SELECT n FROM t").rows == [(7,)]
    finally:
        db.close()
        db.close()  # idempotent


def test_under_gevent_statements_run_off_the_hub(tmp_path: Path) -> None:
    script = REPO_ROOT / "tests" / "support" / "gevent_sqlite.py"
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "g.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "hub_ran_during_statement": True,
        "parallel": True,
        "timeout_status": 400,
        "greenlets_left": 0,
        "point": {"lookup_stayed_on_hub": True, "heavy_moved_to_a_thread": True},
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_scan_threads_run_at_a_lower_cpu_priority_than_the_others(tmp_path: Path) -> None:
    def configure(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.create_function(
            "nice", 0, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )

    base = os.getpriority(os.PRIO_PROCESS, 0)
    db = Connections(tmp_path / "d.db", readers=2, configure=configure)
    try:
        scan = db.read("SELECT nice()", lane="scan", client="a").rows
        point = db.read("SELECT nice()").rows
        write = db.write("SELECT nice()").rows
        assert scan == [(min(19, base + SCAN_NICE),)]
        assert point == write == [(base,)]
    finally:
        db.close()
