"""What deleting a record does to the records that point at it, as PocketBase does it.

Rules (PocketBase 0.40, ``core/record_model.go``'s cascade on delete):

1. Every relation field of every collection whose target is the deleted
   record's collection is looked at, single (the id) and multiple (the id in
   the JSON array).
2. ``cascadeDelete``: the referencing record is deleted too, and its own
   references are handled the same way (children, grandchildren: each record
   once, so a cycle ends).
3. Otherwise the id is removed from the field: a single relation becomes
   ``""``, a multiple one loses that id.  When that leaves a *required*
   relation empty the whole delete is refused (``RelationRequired``, PocketBase's
   400 "Failed to delete record. Make sure that the record is not part of a
   required relation reference."), and nothing changes.
4. It all happens in the caller's transaction (``cascade`` runs inside
   ``Connections.transaction``, on the writer thread, SQL only); the caller
   emits the events after the commit: a ``delete`` for each cascaded record, an
   ``update`` for each record that lost the id, then the ``delete`` of the
   record itself.
"""

from __future__ import annotations

import json
import sqlite3
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field

from realtime_flask.core.rules import json_text
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Field
from realtime_flask.core.schema import Schema
from realtime_flask.errors import RelationRequired
from realtime_flask.store.sql import quote
from realtime_flask.store.sql import select_list
from realtime_flask.store.validate import now_text

__all__ = ["Cascade", "cascade"]

Row = tuple[t.Any, ...]


@dataclass(slots=True)
class Cascade:
    """What a delete did besides the record itself, in the order the events go out."""

    #: (collection, row as it was) of every record deleted along, children first found first.
    deleted: list[tuple[Collection, Row]] = field(default_factory=list)
    #: (collection, row after the change) of every record that lost the id.
    updated: list[tuple[Collection, Row]] = field(default_factory=list)


def _references(schema: Schema, target: Collection) -> Iterator[tuple[Collection, Field]]:
    for coll in schema:
        for f in coll.fields:
            if f.type == "relation" and f.collection_id == target.id:
                yield coll, f


def _pointing(conn: sqlite3.Connection, coll: Collection, f: Field, record_id: str) -> list[Row]:
    column = quote(f.name)
    if f.multiple:
        where = f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ?)"
    else:
        where = f"{column} = ?"
    sql = f"SELECT {select_list(coll)} FROM {quote(coll.name)} WHERE {where}"
    return [tuple(row) for row in conn.execute(sql, (record_id,)).fetchall()]


def _column_index(coll: Collection, name: str) -> int:
    """The position of field ``name`` in a row of ``select_list(coll)``."""
    return [f.name for f in coll.fields].index(name)


def cascade(conn: sqlite3.Connection, schema: Schema, coll: Collection, record_id: str) -> Cascade:
    """Apply rules 1-3 for deleting ``record_id`` of ``coll`` inside the open transaction;
    the record itself is not deleted here.

    :raises RelationRequired: a required relation would be left empty.
    """
    out = Cascade()
    seen = {(coll.id, record_id)}
    todo = [(coll, record_id)]
    changed: dict[tuple[str, str], Collection] = {}
    while todo:
        target, target_id = todo.pop(0)
        for ref_coll, f in _references(schema, target):
            at = _column_index(ref_coll, f.name)
            for row in _pointing(conn, ref_coll, f, target_id):
                ref_id = str(row[_column_index(ref_coll, "id")])
                if (ref_coll.id, ref_id) in seen:
                    continue
                if f.cascade_delete:
                    seen.add((ref_coll.id, ref_id))
                    out.deleted.append((ref_coll, row))
                    todo.append((ref_coll, ref_id))
                    continue
                if f.multiple:
                    ids = json.loads(row[at]) if isinstance(row[at], str) and row[at] else []
                    left = [i for i in ids if i != target_id]
                    value: object = json_text(left)
                    empty = not left
                else:
                    value, empty = "", True
                if f.required and empty:
                    raise RelationRequired()
                # Saved as a change of the record: its onUpdate autodates move too.
                stamps = [a.name for a in ref_coll.fields if a.type == "autodate" and a.on_update]
                assignments = ", ".join(f"{quote(n)} = ?" for n in [f.name, *stamps])
                conn.execute(
                    f"UPDATE {quote(ref_coll.name)} SET {assignments} WHERE id = ?",
                    (value, *[now_text() for _ in stamps], ref_id),
                )
                changed[(ref_coll.id, ref_id)] = ref_coll
    for ref_coll, row in out.deleted:
        ref_id = str(row[_column_index(ref_coll, "id")])
        conn.execute(f"DELETE FROM {quote(ref_coll.name)} WHERE id = ?", (ref_id,))
    for (coll_id, ref_id), ref_coll in changed.items():
        if (coll_id, ref_id) in seen:
            continue  # deleted along after all
        row = conn.execute(
            f"SELECT {select_list(ref_coll)} FROM {quote(ref_coll.name)} WHERE id = ?", (ref_id,)
        ).fetchone()
        if row is not None:
            out.updated.append((ref_coll, tuple(row)))
    return out
