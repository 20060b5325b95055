"""Statements off the hub under gevent, in a fresh interpreter (run by test_connections.py).

Patching must come first, as in every entry point.  Prints one JSON line:

* ``hub_ran_during_statement``: a statement waits inside SQLite for a byte
  that only the main greenlet writes; it gets it only if the hub kept running.
* ``parallel``: two scan reads each wait inside SQLite for the other's byte.
* ``timeout_status``: the status of a statement stopped by the time limit
  (the limit's timer is a hub timer, armed while the greenlet waits).
* ``greenlets_left``: greenlets alive after 1,000 reads, beyond those before.
* ``point``: a lookup by rowid runs on the hub (within the step budget); a
  statement over the budget is stopped there and rerun on a point thread.
"""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.socket  # noqa: E402
from greenlet import greenlet  # noqa: E402

from realtime_flask.errors import QueryTimeout  # noqa: E402
from realtime_flask.store.connections import Connections  # noqa: E402

real_select = monkey.get_original("select", "select")
WAIT = 10.0


def main(path: str) -> None:
    hub_pipe = os.pipe()
    pair = (os.pipe(), os.pipe())
    started = os.pipe()  # the statement writes a byte once it is inside SQLite

    def wait_byte(fd: int) -> int:
        readable, _, _ = real_select([fd], [], [], WAIT)
        if readable:
            os.read(fd, 1)
            return 1
        return 0

    def wait_hub() -> int:
        os.write(started[1], b"x")
        return wait_byte(hub_pipe[0])

    def meet(side: int) -> int:
        os.write(pair[side][1], b"x")
        return wait_byte(pair[1 - side][0])

    def configure(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.create_function("wait_hub", 0, wait_hub)
        conn.create_function("meet", 1, meet)

    db = Connections(path, readers=2, query_timeout=0, configure=configure)
    db.write("CREATE TABLE IF NOT EXISTS t (n INTEGER)")

    reading = gevent.spawn(db.read, "SELECT wait_hub()", lane="scan", client="a")
    gevent.socket.wait_read(started[0], timeout=WAIT)  # awaited on the hub, cooperatively
    os.write(hub_pipe[1], b"x")  # only reached if the hub is not blocked
    hub_ran = reading.get(timeout=WAIT * 2).rows == [(1,)]

    both = [
        gevent.spawn(db.read, f"SELECT meet({side})", lane="scan", client=str(side))
        for side in (0, 1)
    ]
    parallel = all(g.get(timeout=WAIT * 2).rows == [(1,)] for g in both)

    limited = Connections(path, readers=1, query_timeout=0.05)
    try:
        limited.read(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        )
        status = 200
    except QueryTimeout as exc:
        status = exc.status_hint
    limited.close()

    # Point reads: a lookup stays on the hub, a heavy statement moves to a thread.
    inline = db._inline
    assert inline is not None
    db.write("CREATE TABLE IF NOT EXISTS big (n INTEGER)")
    db.write(
        "INSERT INTO big WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 20000) SELECT x FROM c"
    )
    counts = (inline.count, inline.moved)
    small = db.read("SELECT n FROM big WHERE rowid = ?", (7,)).rows
    after_small = (inline.count, inline.moved)
    heavy = db.read("SELECT sum(n) FROM big").rows
    after_heavy = (inline.count, inline.moved)
    point = {
        "lookup_stayed_on_hub": small == [(7,)] and after_small == (counts[0] + 1, counts[1]),
        "heavy_moved_to_a_thread": heavy == [(200010000,)]
        and after_heavy == (after_small[0] + 1, after_small[1] + 1),
    }

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, greenlet) and not o.dead)

    gc.collect()
    before = alive()
    readers = [
        gevent.spawn(db.read, "SELECT count(*) FROM t", lane="scan", client=str(n % 7))
        for n in range(1000)
    ]
    gevent.joinall(readers, timeout=WAIT * 6, raise_error=True)
    del readers
    gc.collect()
    left = alive() - before
    db.close()
    print(
        json.dumps(
            {
                "hub_ran_during_statement": hub_ran,
                "parallel": parallel,
                "timeout_status": status,
                "greenlets_left": left,
                "point": point,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
