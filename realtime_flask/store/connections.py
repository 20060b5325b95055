"""SQLite connections off the gevent hub: one writer thread, reader threads, a time limit.

``sqlite3`` runs a statement in C on the calling thread.  Under gevent that
thread is the hub's: while one slow list query runs, no event reaches any
stream of the worker.  This module is where every statement of the store runs.

Rules:

1. Every statement runs on a thread of a lane's own ``runtime.Executor``,
   never on the caller's (but see rule 3): under gevent the hub keeps serving while it runs
   (``sqlite3`` releases the GIL while SQLite works); with plain threads the
   behaviour is the same, with real threads.
2. A lane owns as many connections as it has threads; a call takes a free
   one on its thread, so a connection is used by one statement at a time and
   the callers share no lock with SQLite.  Three lanes:

   * ``write``: one thread, the one writer connection.  A write transaction
     is one call (:meth:`Connections.transaction`), ``BEGIN IMMEDIATE`` to
     ``COMMIT`` on that thread, so writers queue on the thread and run back
     to back, never waiting for the hub between two statements, and a caller
     killed mid-write cannot leave a transaction open.
   * ``scan``: ``readers`` threads for client list queries; a client key may
     have at most ``per_client`` of them at once, waiting cooperatively (first
     come, first served) beyond that, so one client cannot hold every reader.
     Their CPU priority is lower (``SCAN_NICE``): when list queries take every
     core, the hub still runs first.
   * ``point``: two threads for lookups by id and rule lookups, so they never
     queue behind scans.

   Readers never wait for the writer (WAL mode) and see the last commit.
3. One exception, under gevent: a point read is first tried on the hub, on
   a connection of its own, with a budget of SQLite VM steps (``INLINE_*``,
   about a tenth of a millisecond).  A lookup by id fits many times over and
   skips the trip to a thread (about 0.1 ms on its own); a statement that
   needs more is stopped by SQLite's progress handler and rerun on the point
   lane, so the hub is never held longer than the budget.
4. Only SQL runs on those threads: calls return fetched rows.  Turning rows
   into records, evaluating rules and publishing events stay with the caller,
   so no gevent object or patched lock is touched off the hub.
5. A call that runs past ``query_timeout`` (counted from its submission) is
   interrupted (``Connection.interrupt``) and raises QueryTimeout (PocketBase's
   400).  A caller killed while it waits interrupts its statement too.
6. Waiting for another process's write lock is SQLite's own busy wait, on the
   writer thread, bounded by ``write_timeout`` (StoreBusy, 503).
7. An in-memory database cannot be shared between connections: with
   ``":memory:"`` every call runs in the write lane, one at a time.
"""

from __future__ import annotations

import sqlite3
import threading
import typing as t
import weakref
from collections.abc import Iterator
from pathlib import Path

from realtime_flask import runtime
from realtime_flask.errors import QueryTimeout
from realtime_flask.errors import StoreBusy

__all__ = ["Connections", "Lane", "Result"]

Params = tuple[object, ...] | list[object] | dict[str, object]
Row = tuple[t.Any, ...]
Lane = t.Literal["scan", "point"]
_T = t.TypeVar("_T")

#: How much lower the scan threads' CPU priority is than the process's (19: the
#: lowest).  When list queries use every core, the hub (events, streams, small
#: requests) and the writer still get the CPU at once; the queries take what
#: is left (Linux; elsewhere no change).  Measured in ``docs/benchmarks.md``
#: ("Slow queries (after the fix)"): nice 10 left the event p99 at 3.2x its
#: quiet value with 2 queries on 2 cores, nice 19 at 2.1x-2.6x.
SCAN_NICE: t.Final = 19
#: Threads (and connections) of the point lane.
POINT_READERS: t.Final = 2
#: A point read on the hub is stopped after INLINE_CALLS x INLINE_STEP SQLite VM
#: steps (about a tenth of a millisecond; a lookup by id takes a few hundred)
#: and rerun on the point lane's threads.
INLINE_STEP: t.Final = 1000
INLINE_CALLS: t.Final = 10


class Result:
    """What a statement returned: every row (already fetched), rowcount, lastrowid.

    Offers the ``sqlite3.Cursor`` reading methods the store uses, so code moves
    from a cursor to a result without change.
    """

    __slots__ = ("lastrowid", "rowcount", "rows")

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Row]:
        return self.rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)


def _execute(conn: sqlite3.Connection, sql: str, params: Params) -> Result:
    cursor = conn.execute(sql, params)
    rows = cursor.fetchall()  # fetched to the end: the statement is finished
    return Result(rows, cursor.rowcount, cursor.lastrowid)


class _Call:
    """One call's connection while it runs, seen by its timer and its caller."""

    __slots__ = ("conn", "stopped", "timed_out")

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.stopped = False  # do not start (timed out or abandoned while queued)
        self.timed_out = False


class _Lane:
    """An executor's threads and the connections they use (rule 2)."""

    def __init__(self, conns: list[sqlite3.Connection], *, nice: int = 0) -> None:
        self.conns = conns
        self._free = list(conns)
        self._guard = runtime.native_lock()  # _free and every _Call; held for instructions only
        self._executor = runtime.Executor(len(conns), nice=nice)
        self.count = 0  # calls made

    def run(self, fn: t.Callable[[sqlite3.Connection], _T], timeout: float) -> _T:
        self.count += 1
        call = _Call()

        def work() -> _T:
            with self._guard:
                if call.stopped:
                    raise sqlite3.OperationalError("interrupted")
                conn = call.conn = self._free.pop()
            try:
                return fn(conn)
            finally:
                with self._guard:
                    call.conn = None
                    self._free.append(conn)

        def stop(timed_out: bool) -> None:
            with self._guard:
                call.timed_out = call.timed_out or timed_out
                call.stopped = True
                if call.conn is not None:
                    call.conn.interrupt()

        cancel = runtime.call_later(timeout, lambda: stop(True)) if timeout > 0 else None
        try:
            return self._executor.run(work)
        except sqlite3.OperationalError as exc:
            if call.timed_out and "interrupt" in str(exc):
                raise QueryTimeout() from None
            raise
        except BaseException:
            # Killed while the call waited or ran: do not leave it running.
            stop(False)
            raise
        finally:
            if cancel is not None:
                cancel()

    def close(self) -> None:
        self._executor.close()
        for conn in self.conns:
            conn.close()


class _Inline:
    """Point reads tried on the hub first, within a budget of VM steps (rule 3).

    Used from the hub's thread only, one statement at a time (greenlets do not
    switch inside a ``sqlite3`` call).  Returns None when a statement needs
    more than the budget: it was stopped, and the caller runs it on the point
    lane's threads instead.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.count = 0
        self.moved = 0  # statements that went over the budget
        self._calls = 0
        conn.set_progress_handler(self._progress, INLINE_STEP)

    def _progress(self) -> int:
        self._calls += 1
        return 1 if self._calls > INLINE_CALLS else 0

    def run(self, fn: t.Callable[[sqlite3.Connection], _T]) -> _T | None:
        self.count += 1
        self._calls = 0
        try:
            return fn(self.conn)
        except sqlite3.OperationalError as exc:
            if "interrupt" not in str(exc):
                raise
            self.moved += 1
            return None

    def close(self) -> None:
        self.conn.close()


def _close_lanes(lanes: list[_Lane | _Inline]) -> None:
    for lane in lanes:
        lane.close()


class _Waiter:
    """A scan read waiting for its turn; ``_give`` wakes it."""

    __slots__ = ("client", "ready")

    def __init__(self, client: str) -> None:
        self.client = client
        self.ready = threading.Event()


class Connections:
    """The connections of one SQLite database file (see the module's rules).

    :param path: a database file, or ``":memory:"``.
    :param readers: threads and connections for scan reads (list queries);
        ``0`` or an in-memory database sends every read to the write lane.
    :param per_client: how many scan reads one client key may run at once
        (default: all but one reader, so another client always finds one).
    :param query_timeout: seconds a call may take before it is interrupted
        (QueryTimeout); ``0`` disables the limit.
    :param write_timeout: seconds a write waits for another process's write
        lock (SQLite's ``busy_timeout``) before StoreBusy.
    :param configure: called with each new connection (pragmas) before use.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        readers: int = 4,
        per_client: int | None = None,
        query_timeout: float = 10.0,
        write_timeout: float = 5.0,
        configure: t.Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = str(path)
        self.query_timeout = query_timeout
        self.write_timeout = write_timeout
        self._configure = configure or (lambda conn: None)
        self._closed = False
        writer = self._connect()
        writer.execute(f"PRAGMA busy_timeout={int(write_timeout * 1000)}")
        self._write = _Lane([writer])
        in_memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self.readers = 0 if in_memory else max(0, readers)
        self.per_client = max(1, per_client if per_client is not None else self.readers - 1)
        self._scan: _Lane | None = None
        self._point: _Lane | None = None
        self._inline: _Inline | None = None
        if self.readers:
            self._scan = _Lane([self._connect() for _ in range(self.readers)], nice=SCAN_NICE)
            self._point = _Lane([self._connect() for _ in range(POINT_READERS)])
            if runtime.gevent_active():
                self._inline = _Inline(self._connect())
        # A store dropped without close() still stops its threads when collected.
        self._finalizer = weakref.finalize(self, _close_lanes, self._lanes())
        self._lock = threading.Lock()  # guards the scan bookkeeping; never held across a wait
        self._running = 0  # scan reads running
        self._holding: dict[str, int] = {}  # client key -> scan reads it runs
        self._waiting: list[_Waiter] = []  # in arrival order

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._configure(conn)
        return conn

    def _lanes(self) -> list[_Lane | _Inline]:
        lanes: list[_Lane | _Inline | None] = [self._write, self._scan, self._point, self._inline]
        return [lane for lane in lanes if lane is not None]

    @property
    def statements(self) -> int:
        """Calls made so far in every lane (a transaction counts once; tests, metrics)."""
        return sum(lane.count for lane in self._lanes())

    def setup(self, fn: t.Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` with the writer connection on the writer thread (schema
        migration at start-up), without a time limit; its result or exception
        comes back to the caller."""
        return self._write.run(fn, 0)

    # -- reads -------------------------------------------------------------------

    def read(
        self, sql: str, params: Params = (), *, lane: Lane = "point", client: str | None = None
    ) -> Result:
        """Run a read-only statement and return its rows.

        :param lane: ``"scan"`` for a client's list query (at most
            ``per_client`` per ``client`` key at once, waiting cooperatively
            for a turn), ``"point"`` for a bounded lookup.
        :raises QueryTimeout: the statement ran past ``query_timeout``.
        """
        return self.read_many([(sql, params)], lane=lane, client=client)[0]

    def read_many(
        self,
        statements: list[tuple[str, Params]],
        *,
        lane: Lane = "point",
        client: str | None = None,
    ) -> list[Result]:
        """``read`` for several statements in one call (one trip to a reader thread),
        e.g. a page of a list and its count; the time limit covers them all."""

        def run(conn: sqlite3.Connection) -> list[Result]:
            return [_execute(conn, sql, params) for sql, params in statements]

        if self._scan is None or self._point is None:
            return self._write.run(run, self.query_timeout)
        if lane == "point":
            if self._inline is not None:
                found = self._inline.run(run)
                if found is not None:
                    return found
            return self._point.run(run, self.query_timeout)
        key = client or ""
        self._take(key)
        try:
            return self._scan.run(run, self.query_timeout)
        finally:
            self._give(key)

    def _may_run(self, client: str) -> bool:
        return self._running < self.readers and self._holding.get(client, 0) < self.per_client

    def _take(self, client: str) -> None:
        """Wait for a scan turn for ``client``: first come, first served among
        the clients under their cap; woken alone, by ``_give``."""
        with self._lock:
            # A waiter exists only while it is over its cap or every reader
            # runs, and ``_give`` hands a turn to the first waiter that may
            # run: a newcomer never jumps an eligible waiter.
            if self._may_run(client):
                self._start(client)
                return
            waiter = _Waiter(client)
            self._waiting.append(waiter)
        try:
            waiter.ready.wait()
        except BaseException:  # killed while waiting: leave no claim behind
            with self._lock:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                    raise
            self._give(client)  # it had been given a turn already
            raise

    def _start(self, client: str) -> None:
        self._running += 1
        self._holding[client] = self._holding.get(client, 0) + 1

    def _give(self, client: str) -> None:
        with self._lock:
            self._running -= 1
            left = self._holding[client] - 1
            if left:
                self._holding[client] = left
            else:
                del self._holding[client]
            for index, waiter in enumerate(self._waiting):
                if self._may_run(waiter.client):
                    del self._waiting[index]
                    self._start(waiter.client)
                    waiter.ready.set()
                    break

    # -- writes ------------------------------------------------------------------

    def transaction(self, fn: t.Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT`` on the writer thread.

        ``fn`` gets the writer connection and issues only SQL; any exception it
        raises (or an interrupt) rolls the transaction back and reaches the
        caller.  ``sqlite3.IntegrityError`` reaches it unchanged.

        :raises StoreBusy: another process held SQLite's write lock past
            ``write_timeout``.
        :raises QueryTimeout: the transaction ran past ``query_timeout``.
        """

        def script(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._writing(script)

    def write(self, sql: str, params: Params = ()) -> Result:
        """Run one statement on the writer connection, in a transaction of its own."""
        return self._writing(lambda conn: _execute(conn, sql, params))

    def _writing(self, fn: t.Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return self._write.run(fn, self.query_timeout)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy() from None
            raise

    def close(self) -> None:
        """Stop the threads and close every connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
