"""SQLite connections off the gevent hub: one writer, a pool of readers, a time limit per statement.

``sqlite3`` runs a statement in C on the calling thread.  Under gevent that
thread is the hub's: while one slow list query runs, no event reaches any
stream of the worker.  This module is where every statement of the store runs.

Rules:

1. Every statement runs through ``runtime.run_blocking``: on a thread of the
   hub's pool under gevent (``sqlite3`` releases the GIL while SQLite works,
   so the hub keeps serving), in the caller's own thread otherwise (threaded
   servers and tests get the same behaviour from real threads).
2. Only SQL runs on those threads: :meth:`Connections.read` and
   :meth:`Writer.execute` return fetched rows.  Turning rows into records,
   evaluating rules and publishing events stay with the caller, so no gevent
   object or patched lock is ever touched off the hub.
3. One writer connection, held for a whole transaction by one caller at a time
   (:meth:`Connections.writing`).  SQLite allows one writer per database file
   across processes too; waiting for another process's lock is SQLite's own
   busy wait, on the pool thread, bounded by ``write_timeout`` (StoreBusy).
4. Reads use their own connections (WAL mode: they never wait for the writer
   and see the last commit), so reads run in parallel.  Two lanes:
   ``"scan"`` for client list queries, capped per client key so one client
   cannot hold every reader; ``"point"`` for lookups by id and rule lookups,
   with a connection of its own, so they never queue behind scans.
5. A statement that runs past ``query_timeout`` is interrupted
   (``Connection.interrupt``) and raises QueryTimeout (PocketBase's 400 body).
6. An in-memory database cannot be shared between connections: with
   ``":memory:"`` every statement runs on the writer connection, one at a time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import typing as t
from collections.abc import Iterator
from pathlib import Path

from realtime_flask import runtime
from realtime_flask.errors import QueryTimeout
from realtime_flask.errors import StoreBusy

__all__ = ["Connections", "Lane", "Result", "Writer"]

Params = tuple[object, ...] | list[object] | dict[str, object]
Row = tuple[t.Any, ...]
Lane = t.Literal["scan", "point"]


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


class _Slot:
    """One connection, used by one statement at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.busy = threading.Lock()  # held by the caller (a greenlet) for one statement
        self.guard = threading.Lock()  # orders a timeout's interrupt against the statement's end
        self.running: object | None = None

    def run(self, sql: str, params: Params, timeout: float) -> Result:
        token = object()

        def interrupt() -> None:
            with self.guard:
                if self.running is token:
                    self.conn.interrupt()
                    timed_out.append(True)

        def work() -> Result | Exception:
            # Errors come back as values: raised on a pool thread, gevent would
            # print each one (a unique-constraint hit is not worth a traceback).
            try:
                cursor = self.conn.execute(sql, params)
                rows = cursor.fetchall()
            except Exception as exc:  # noqa: BLE001 (re-raised by the caller below)
                return exc
            return Result(rows, cursor.rowcount, cursor.lastrowid)

        timed_out: list[bool] = []
        with self.busy:
            self.running = token
            cancel = runtime.call_later(timeout, interrupt) if timeout > 0 else None
            try:
                outcome = runtime.run_blocking(work)
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
            except sqlite3.OperationalError as exc:
                if timed_out and "interrupt" in str(exc):
                    raise QueryTimeout() from None
                raise
            except BaseException:
                # The caller was killed while the statement ran on its thread:
                # stop the statement rather than leave it running on a connection
                # the next caller is about to use.
                self.conn.interrupt()
                raise
            finally:
                with self.guard:
                    self.running = None
                if cancel is not None:
                    cancel()


class _Waiter:
    """A scan read waiting for a reader; ``_give`` hands it one and wakes it."""

    __slots__ = ("client", "ready", "slot")

    def __init__(self, client: str) -> None:
        self.client = client
        self.ready = threading.Event()
        self.slot: _Slot | None = None


class Writer:
    """The writer connection, held by one caller for one transaction."""

    def __init__(self, slot: _Slot, timeout: float) -> None:
        self._slot = slot
        self._timeout = timeout

    def execute(self, sql: str, params: Params = ()) -> Result:
        """Run one statement of the transaction; QueryTimeout past the time limit."""
        return self._slot.run(sql, params, self._timeout)


class Connections:
    """The connections of one SQLite database file (see the module's rules).

    :param path: a database file, or ``":memory:"``.
    :param readers: connections for scan reads (list queries); ``0`` or an
        in-memory database sends reads to the writer connection.
    :param per_client: how many scan readers one client key may hold at once
        (default: all but one, so another client always finds one free).
    :param query_timeout: seconds a statement may run before it is interrupted
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
        self._writer = _Slot(self._connect())
        self._writer.conn.execute(f"PRAGMA busy_timeout={int(write_timeout * 1000)}")
        self._writing = threading.Lock()  # one transaction at a time on the writer
        in_memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self.readers = 0 if in_memory else max(0, readers)
        self.per_client = max(1, per_client if per_client is not None else self.readers - 1)
        self._scan: list[_Slot] = []
        self._point: _Slot | None = None
        if self.readers:
            self._scan = [_Slot(self._connect()) for _ in range(self.readers)]
            self._point = _Slot(self._connect())
        self._free = list(self._scan)
        self._lock = threading.Lock()  # guards _free, _holding, _waiting; never held across a wait
        self._holding: dict[str, int] = {}  # client key -> scan readers it holds
        self._waiting: list[_Waiter] = []  # in arrival order
        runtime.reserve_threads(self.readers + 4)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._configure(conn)
        return conn

    # -- reads -------------------------------------------------------------------

    def read(
        self, sql: str, params: Params = (), *, lane: Lane = "point", client: str | None = None
    ) -> Result:
        """Run a read-only statement and return its rows.

        :param lane: ``"scan"`` for a client's list query (a scan reader, at
            most ``per_client`` per ``client`` key at once, waiting
            cooperatively for one), ``"point"`` for a bounded lookup (its own
            connection).
        :raises QueryTimeout: the statement ran past ``query_timeout``.
        """
        if self._point is None:
            return self._writer.run(sql, params, self.query_timeout)
        if lane == "point":
            return self._point.run(sql, params, self.query_timeout)
        slot = self._take(client or "")
        try:
            return slot.run(sql, params, self.query_timeout)
        finally:
            self._give(slot, client or "")

    def _take(self, client: str) -> _Slot:
        """A free scan reader for ``client``: first come, first served among the
        clients under their cap; waits cooperatively (woken alone, by ``_give``)."""
        with self._lock:
            # A waiter exists only while it is over its cap or no reader is
            # free, and ``_give`` hands a freed reader to the first waiter under
            # its cap: a newcomer under its cap never jumps an eligible waiter.
            if self._free and self._holding.get(client, 0) < self.per_client:
                return self._hand_out(client)
            waiter = _Waiter(client)
            self._waiting.append(waiter)
        try:
            waiter.ready.wait()
        except BaseException:  # killed while waiting: leave no claim behind
            with self._lock:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
            if waiter.slot is not None:
                self._give(waiter.slot, client)
            raise
        assert waiter.slot is not None
        return waiter.slot

    def _hand_out(self, client: str) -> _Slot:
        self._holding[client] = self._holding.get(client, 0) + 1
        return self._free.pop()

    def _give(self, slot: _Slot, client: str) -> None:
        with self._lock:
            self._free.append(slot)
            left = self._holding[client] - 1
            if left:
                self._holding[client] = left
            else:
                del self._holding[client]
            for index, waiter in enumerate(self._waiting):
                if self._holding.get(waiter.client, 0) < self.per_client:
                    del self._waiting[index]
                    waiter.slot = self._hand_out(waiter.client)
                    waiter.ready.set()
                    break

    # -- writes ------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[Writer]:
        """Hold the writer connection for one transaction (the caller issues
        ``BEGIN IMMEDIATE``/``COMMIT``); other writers of this process wait
        cooperatively.

        :raises StoreBusy: another process held SQLite's write lock past
            ``write_timeout``.
        """
        with self._writing:
            writer = Writer(self._writer, self.query_timeout)
            try:
                yield writer
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreBusy() from None
                raise

    def close(self) -> None:
        """Close every connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        for slot in [self._writer, *self._scan, *([self._point] if self._point else [])]:
            with slot.busy:
                slot.conn.close()
