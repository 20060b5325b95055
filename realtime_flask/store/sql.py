"""The store's side of the storage contract: tables, columns, and values in and out.

``core.rules.values`` states the contract the compiled rules assume (their SQL
runs on these tables, their in-memory form on the records read back); this
module is the store's half of it.

Rules:

1. One table per collection, named after it; one column per field, in the
   field order of the collection, so a row zips with ``coll.fields``.  ``id``
   is ``TEXT PRIMARY KEY``; every other column has the type the rules assume
   (``core.rules.column_type``) and is declared NOT NULL with the field's
   empty value as DEFAULT, except json (NULL is a JSON value); geoPoint's is ``{"lon":0,"lat":0}``.
2. Values in (``encode``): bool as 0/1, json, geoPoint and multi-valued relation/select/file
   as the rules' ``json_text`` (compact JSON), everything else as is.  Values out (``decode``): text
   ``str``, number ``int`` when integral and exactly representable (below
   2**53) else ``float``, bool ``bool``, json any JSON value, multi-valued
   ``list[str]``.  A record read back carries ``collectionId`` and
   ``collectionName`` first.
3. Migration only adds: a missing table is created, a missing column added;
   nothing is dropped, renamed or retyped.  An auth collection gets a unique
   index on non-empty ``email`` and a token secret (the schema's, else one
   generated once and kept in the meta table).
4. Identifiers reach SQL only through ``quote``, the package's one identifier
   quoting (double quotes, inner ones doubled): the rules' own, re-exported
   here for the store, so rule SQL and store SQL name tables alike.  (It is
   private in ``core.rules.tree`` for now; import it from ``core.rules``
   once that exports it.)  Values reach SQL only as ``?`` parameters.
5. A connection (``configure``) runs in autocommit mode (transactions are
   explicit ``BEGIN``), in WAL mode, and may be used from any thread: the
   caller (``store.connections``) serialises its use.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import typing as t
from collections.abc import Sequence
from pathlib import Path

from realtime_flask.core.rules import column_type
from realtime_flask.core.rules import json_text
from realtime_flask.core.rules import quote_identifier as quote
from realtime_flask.core.schema import META_TABLE
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Field
from realtime_flask.core.schema import Schema

__all__ = [
    "BUSY_SLICE_MS",
    "Record",
    "column_definition",
    "configure",
    "connect",
    "decode",
    "empty",
    "encode",
    "migrate",
    "quote",
    "row_to_record",
    "select_list",
]

#: A record as the store hands it around: field name -> decoded value.
Record = dict[str, t.Any]

#: Milliseconds a reader connection's SQLite busy wait may last (a WAL reader
#: waits only while another connection recovers the log).
BUSY_SLICE_MS = 100


def configure(db: sqlite3.Connection) -> None:
    """Apply the store's settings to a new connection (``store.connections`` calls it)."""
    db.execute("PRAGMA journal_mode=WAL")
    # PocketBase's setting: in WAL mode NORMAL syncs at checkpoints, not at
    # every commit.  A commit survives a crash of the process; a power loss
    # may take the last commits (FULL would fsync every write, ~0.2 ms each).
    db.execute("PRAGMA synchronous=NORMAL")
    # Statements run on pool threads (store.connections), so SQLite's own busy
    # wait never holds the gevent hub; readers rarely wait in WAL mode, the
    # writer's wait is set by Connections (write_timeout).
    db.execute(f"PRAGMA busy_timeout={BUSY_SLICE_MS}")
    db.execute("PRAGMA case_sensitive_like=OFF")


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the database at ``path`` (``":memory:"``: a private one) with the store's
    settings, for scripts and tests; the store itself opens its connections through
    ``store.connections.Connections`` with ``configure``.

    :raises sqlite3.Error: the file cannot be opened.
    """
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    configure(db)
    return db


#: A geoPoint's empty value (PocketBase's column default), encoded.
GEO_POINT_EMPTY: t.Final = '{"lon":0,"lat":0}'


def _constraints(f: Field) -> str:
    """NOT NULL and the DEFAULT (the field's empty value, encoded) of a non-id column."""
    if f.type in ("number", "bool"):
        return "NOT NULL DEFAULT 0"
    if f.type == "geoPoint":
        return f"NOT NULL DEFAULT '{GEO_POINT_EMPTY}'"
    if f.type == "json":
        return "DEFAULT NULL"
    if f.multiple:
        return "NOT NULL DEFAULT '[]'"
    return "NOT NULL DEFAULT ''"


def _column(f: Field) -> str:
    return f"{column_type(f)} {_constraints(f)}"


def column_definition(f: Field) -> str:
    """The column's declared type and constraints, as in ``CREATE TABLE``.

    ``id`` is ``TEXT PRIMARY KEY``; any other field's type is the rules'
    ``column_type`` (the storage contract), e.g. ``REAL NOT NULL DEFAULT 0``.
    """
    return "TEXT PRIMARY KEY" if f.name == "id" else _column(f)


def empty(f: Field) -> object:
    """The field's empty value, decoded: what a new record holds when the body omits it.

    ``0``, ``False``, ``None`` (json), ``[]`` (multi-valued) or ``""``; the
    column's DEFAULT is the same value encoded.
    """
    if f.type == "number":
        return 0
    if f.type == "bool":
        return False
    if f.type == "json":
        return None
    if f.type == "geoPoint":
        return {"lon": 0, "lat": 0}
    if f.multiple:
        return []
    return ""


def encode(f: Field, value: object) -> object:
    """A validated value as its column stores it (rule 2)."""
    if f.type == "bool":
        return 1 if value else 0
    if f.type == "json":
        return None if value is None else json_text(value)
    if f.type == "geoPoint":
        return json_text(value)
    if f.multiple:
        return json_text(list(t.cast(Sequence[str], value or [])))
    return value


def decode(f: Field, value: object) -> object:
    """A stored column value as the record carries it (rule 2).

    Lenient with what another writer may have left: NULL reads as the empty
    value, a multi-valued column that is not a JSON array reads as ``[]``.
    """
    if f.type == "number":
        number = float(t.cast(float, value or 0))
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if f.type == "bool":
        return bool(value)
    if f.type == "json":
        return None if value is None else json.loads(t.cast(str, value))
    if f.type == "geoPoint":
        try:
            point = json.loads(t.cast(str, value or GEO_POINT_EMPTY))
        except ValueError:
            point = None
        return point if isinstance(point, dict) else {"lon": 0, "lat": 0}
    if f.multiple:
        try:
            items = json.loads(t.cast(str, value or "[]"))
        except ValueError:
            return []
        return [str(i) for i in items] if isinstance(items, list) else []
    return "" if value is None else value


def select_list(coll: Collection) -> str:
    """Every column of ``coll``, quoted, in field order: what ``row_to_record`` reads."""
    return ", ".join(quote(f.name) for f in coll.fields)


def row_to_record(coll: Collection, row: Sequence[t.Any]) -> Record:
    """A row selected with ``select_list`` as a record (hidden fields included)."""
    record: Record = {"collectionId": coll.id, "collectionName": coll.name}
    for f, value in zip(coll.fields, row, strict=True):
        record[f.name] = decode(f, value)
    return record


def _meta_secret(db: sqlite3.Connection, collection_id: str) -> str:
    """A random token secret for the collection, made once and kept in the database."""
    key = f"token_secret:{collection_id}"
    row = db.execute(f"SELECT value FROM {META_TABLE} WHERE key = ?", (key,)).fetchone()
    if row is not None:
        return t.cast(str, row[0])
    value = secrets.token_urlsafe(32)
    db.execute(f"INSERT INTO {META_TABLE} (key, value) VALUES (?, ?)", (key, value))
    return value


def migrate(db: sqlite3.Connection, schema: Schema) -> dict[str, str]:
    """Bring the database up to ``schema`` (rule 3); returns each auth collection's token secret.

    :returns: collection id -> the secret its tokens are signed with.
    :raises sqlite3.Error: when the database cannot be written.
    """
    found: dict[str, str] = {}
    db.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT)")
    for coll in schema:
        table = quote(coll.name)
        columns = ", ".join(f"{quote(f.name)} {column_definition(f)}" for f in coll.fields)
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for f in coll.fields:
            if f.name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {quote(f.name)} {_column(f)}")
        if coll.is_auth:
            found[coll.id] = coll.token_secret or _meta_secret(db, coll.id)
            db.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {quote('idx_email_' + coll.id)} "
                f"ON {table} (email) WHERE email != ''"
            )
    return found
