"""Records as PocketBase presents them: visible fields, ``expand``, ``fields``.

One presentation for the REST API and for realtime frames, so a subscriber
receives exactly what a GET of the same record would return to it.

Rules:

1. A presented record starts with ``collectionId`` and ``collectionName``,
   then the collection's fields in schema order.
2. Never shown: an auth record's ``password`` and ``tokenKey``.  Shown to
   superusers only: hidden fields.  An auth record's ``email`` is shown to
   superusers, to the record itself, or to anyone when ``emailVisibility``.
3. ``expand`` follows relation fields (dotted paths nest); each related record
   is shown only if it passes its own collection's viewRule for the same
   request, and is presented by these same rules.  A path naming no relation
   field is ignored; when no path names one, there is no ``expand`` key at
   all, and a relation with nothing visible is left out of ``expand``.
4. ``fields`` (``pick_fields``) is applied last, to the whole presented
   record, ``expand`` included.
5. Reads go through the ``Reads`` given (the store); nothing here writes.
"""

from __future__ import annotations

import typing as t
from collections.abc import Sequence

from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Schema
from realtime_flask.engine.access import pick_fields
from realtime_flask.store.sql import Record
from realtime_flask.store.sql import empty

__all__ = ["Reads", "expand_relations", "present_record", "public_record", "without_password"]


class Reads(t.Protocol):
    """What presenting needs from the store: the schema, related records, the viewRule."""

    @property
    def schema(self) -> Schema: ...

    def lookup(self, collection_id: str, ids: Sequence[str]) -> list[Record]: ...

    def can_access(
        self, coll: Collection, action: str, record_id: str, ctx: RequestContext
    ) -> bool: ...


def without_password(record: Record) -> Record:
    """The stored record minus its password hash: what may travel in events, realtime
    auth state and Redis.  (``tokenKey`` stays: auth side effects compare it.)"""
    return {k: v for k, v in record.items() if k != "password"}


def public_record(coll: Collection, record: Record, ctx: RequestContext | None = None) -> Record:
    """The record as the REST API shows it to ``ctx`` (a guest when None), rules 1-2.

    A field missing from ``record`` is shown with its empty value.
    """
    superuser = ctx is not None and ctx.superuser
    own = (
        ctx is not None
        and ctx.auth is not None
        and ctx.auth.get("collectionId") == coll.id
        and ctx.auth.get("id") == record.get("id")
    )
    out: Record = {"collectionId": coll.id, "collectionName": coll.name}
    for f in coll.fields:
        if coll.is_auth and f.name in ("password", "tokenKey"):
            continue
        if f.hidden and not superuser:
            continue
        if (
            coll.is_auth
            and f.name == "email"
            and not (superuser or own or record.get("emailVisibility"))
        ):
            continue
        out[f.name] = record.get(f.name, empty(f))
    return out


def present_record(
    reads: Reads,
    coll: Collection,
    record: Record,
    ctx: RequestContext,
    *,
    fields: str = "",
    expand: str = "",
) -> Record:
    """What the REST API returns to ``ctx`` for the stored ``record``.

    :param fields: PocketBase's ``fields`` parameter (comma-separated dotted
        paths, ``*`` wildcards); ``""`` keeps everything.
    :param expand: PocketBase's ``expand`` parameter (comma-separated dotted
        relation paths); ``""`` expands nothing.
    """
    out = public_record(coll, record, ctx)
    if expand:
        expanded = expand_relations(reads, coll, record, expand.split(","), ctx)
        if expanded is not None:
            out["expand"] = expanded
    return t.cast(Record, pick_fields(out, fields)) if fields else out


def expand_relations(
    reads: Reads, coll: Collection, record: Record, paths: Sequence[str], ctx: RequestContext
) -> Record | None:
    """``record``'s ``expand`` object for dotted relation ``paths`` (rule 3).

    :returns: relation field name -> the related record (single relation) or
        the list of them (multiple), each presented to ``ctx``; None when no
        path names a relation field (PocketBase then sends no key).
    """
    tree: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.strip().partition(".")
        if head:
            tree.setdefault(head, [])
            if rest:
                tree[head].append(rest)
    out: Record = {}
    valid = False
    for name, nested in tree.items():
        f = coll.field(name)
        if f is None or f.type != "relation":
            continue
        valid = True
        target = reads.schema.get(f.collection_id)
        if target is None:
            continue
        raw = record.get(name)
        ids = list(raw) if isinstance(raw, list) else ([raw] if raw else [])
        visible = []
        for rel in reads.lookup(target.id, ids):
            if not reads.can_access(target, "view", rel["id"], ctx):
                continue
            shown = public_record(target, rel, ctx)
            if nested:
                sub = expand_relations(reads, target, rel, nested, ctx)
                if sub is not None:
                    shown["expand"] = sub
            visible.append(shown)
        if visible:
            out[name] = visible if f.multiple else visible[0]
    return out if valid else None
