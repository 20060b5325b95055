"""realtime_flask.store.connections: one writer, parallel readers, per-client caps, time limits.

Run with plain threads here (the same code path as a threaded server); the
gevent flavour (statements off the hub) is ``tests/support/gevent_sqlite.py``,
run in a fresh, patched interpreter by the last test.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest

from realtime_flask.errors import QueryTimeout
from realtime_flask.errors import StoreBusy
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
    until the test opens the gate; ``meet()`` returns 1 only if two
    statements are inside it at the same time.
    """

    def __init__(self) -> None:
        self.open = threading.Event()
        self.started: list[str] = []
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(2, timeout=WAIT)

    def hold(self, tag: str) -> int:
        with self.lock:
            self.started.append(tag)
        return 1 if self.open.wait(WAIT) else 0

    def meet(self) -> int:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            return 0
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
    with conns.writing() as w:
        w.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER)")
        w.execute("INSERT INTO t VALUES ('a', 1), ('b', 2)")
    yield conns
    gate.open.set()
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
        gate.open.set()
        for thread in (first, second, other):
            thread.join(WAIT)
        assert gate.started == ["a1", "b1", "a2"]
        assert second_out[0].rows == other_out[0].rows == [(1,)]  # type: ignore[attr-defined]
    finally:
        gate.open.set()
        db.close()


def test_point_reads_never_queue_behind_scans(tmp_path: Path, gate: Gate) -> None:
    db = Connections(tmp_path / "d.db", readers=1, per_client=1, configure=gate.configure)
    try:
        with db.writing() as w:
            w.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
            w.execute("INSERT INTO t VALUES ('a')")
        scan, _ = in_thread(lambda: db.read("SELECT hold('scan')", lane="scan", client="a"))
        wait_for(lambda: gate.started == ["scan"])
        assert db.read("SELECT id FROM t WHERE id = ?", ("a",)).rows == [("a",)]
        gate.open.set()
        scan.join(WAIT)
    finally:
        gate.open.set()
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
        with db.writing() as w:
            assert w.execute("SELECT 3").rows == [(3,)]
    finally:
        db.close()


def test_readers_see_commits_not_open_transactions(db: Connections) -> None:
    with db.writing() as w:
        w.execute("BEGIN IMMEDIATE")
        w.execute("INSERT INTO t VALUES ('c', 3)")
        assert w.execute("SELECT count(*) FROM t").fetchone() == (3,)
        assert db.read("SELECT count(*) FROM t", lane="scan").fetchone() == (2,)
        w.execute("COMMIT")
    assert db.read("SELECT count(*) FROM t").fetchone() == (3,)


def test_a_write_lock_held_elsewhere_past_the_timeout_is_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    db = Connections(path, readers=1, write_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        with db.writing() as w:
            w.execute("CREATE TABLE t (n INTEGER)")
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy), db.writing() as w:
            w.execute("BEGIN IMMEDIATE")
        other.execute("COMMIT")
        with db.writing() as w:
            w.execute("INSERT INTO t VALUES (1)")
        assert db.read("SELECT n FROM t").rows == [(1,)]
    finally:
        other.close()
        db.close()


def test_an_in_memory_database_runs_on_one_connection() -> None:
    db = Connections(":memory:", readers=4)
    try:
        assert db.readers == 0
        with db.writing() as w:
            w.execute("CREATE TABLE t (n INTEGER)")
            w.execute("INSERT INTO t VALUES (7)")
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
    }
