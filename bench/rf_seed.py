"""Seed realtime_flask bench users before the server starts; print their ids and tokens.

    <server python> bench/rf_seed.py SCHEMA DATA_DIR COUNT

Run with the same python (and realtime_flask) as the server, on the data directory the
server will open.  Users are created through the project's own ``RecordStore`` with a
cheap scrypt cost (``Passwords(n=2)``: the hash records its cost, so the server verifies
it as usual), and each token is ``RecordStore.token_for``: the token ``auth-with-password``
returns, signed with the collection secret the store keeps in that database.  That avoids
two full-cost scrypt hashes per user (about 50 ms each) through the HTTP API.

Output: one JSON object ``{"ids": [...], "tokens": [...]}`` on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import load_schema_file
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore

USERS = "users"
MAX_USERS = 100_000


def main(argv: list[str]) -> int:
    schema_path, data_dir, count = argv[0], Path(argv[1]), int(argv[2])
    if not 0 <= count <= MAX_USERS:
        raise SystemExit(f"COUNT must be 0..{MAX_USERS}")
    data_dir.mkdir(parents=True, exist_ok=True)
    store = RecordStore(
        load_schema_file(schema_path), data_dir / "data.db", passwords=Passwords(n=2)
    )
    superuser = RequestContext(auth=None, superuser=True)
    coll = store.collection(USERS)
    ids: list[str] = []
    tokens: list[str] = []
    try:
        for i in range(count):
            password = f"bench-password-{i}"
            record = store.create(
                USERS,
                {
                    "email": f"bench{i}@example.com",
                    "password": password,
                    "passwordConfirm": password,
                },
                superuser,
            )
            ids.append(str(record["id"]))
            tokens.append(store.token_for(coll, record))
    finally:
        store.close()
    json.dump({"ids": ids, "tokens": tokens}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
