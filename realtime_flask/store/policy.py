"""API rules of the records REST API: who may list, view, create, update, delete.

Pure: this module decides and writes SQL text; ``RecordStore`` runs it.

PocketBase's semantics, followed here:

1. A collection's rule per action (``list``, ``view``, ``create``, ``update``,
   ``delete``) is ``None`` (locked: superusers only, anyone else gets 403
   ``Forbidden``), ``""`` (everyone) or a filter expression.  Superusers pass
   every rule.
2. A record-level rule is checked with SQL on the *stored* row (after the
   write for a create, before it for update and delete), the same compiled
   rule the realtime fan-out evaluates in memory.  A record that fails it is
   404 for view, update and delete (indistinguishable from a missing one) and
   400 for create.
3. A list query adds the listRule to the WHERE clause, so failing records are
   simply left out, never an error.  The client's ``filter`` is ANDed to it,
   compiled as a client filter (hidden fields refused); it fails with 400.
   A non-superuser's ``filter`` or ``sort`` may not use ``@request.`` or
   ``@collection.`` (403, PocketBase's message).
4. ``sort`` is comma-separated fields, ``-`` for descending, ``+`` or nothing
   for ascending, ``@random``; a hidden or unknown field is 400.  Insertion
   order (``rowid``) breaks ties, so pages are stable.
5. ``page`` below 1 is 1; ``perPage`` at or below 0 is 30, above 1000 is 1000.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

from realtime_flask.core.rules import CompiledRule
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.rules import RuleError
from realtime_flask.core.rules import compile_rule
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Schema
from realtime_flask.errors import BadRequest
from realtime_flask.errors import Forbidden
from realtime_flask.store.sql import quote

__all__ = [
    "DEFAULT_PER_PAGE",
    "MAX_PER_PAGE",
    "ListQuery",
    "action_rule",
    "list_query",
    "order_by",
    "row_check",
]

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 1000
_SORT_FIELD = re.compile(r"^[A-Za-z0-9_]+$")


def action_rule(
    schema: Schema, coll: Collection, action: str, ctx: RequestContext
) -> CompiledRule | None:
    """``coll``'s compiled rule for ``action``; None only for a superuser facing a locked rule.

    :raises Forbidden: the rule is locked and ``ctx`` is not a superuser.
    """
    rule = schema.compiled_rule(coll, action)
    if rule is None and not ctx.superuser:
        raise Forbidden()
    return rule


def row_check(
    coll: Collection, rule: CompiledRule, record_id: str, ctx: RequestContext
) -> tuple[str, tuple[object, ...]] | None:
    """SQL (and parameters) selecting one row when the stored record passes ``rule`` for ``ctx``.

    None when no query is needed: a superuser, or a rule that always passes.
    """
    if ctx.superuser or rule.always:
        return None
    sql, params = rule.to_sql(coll.name, ctx)
    return f"SELECT 1 FROM {quote(coll.name)} WHERE id = ? AND ({sql})", (record_id, *params)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The parts of one list request's SQL.

    ``where`` is ``""`` or `` WHERE ...`` with ``?`` placeholders bound by
    ``params``; ``order`` is an ORDER BY list; ``page`` is 1-based and
    ``offset`` the rows skipped before it, capped at SQLite's largest integer
    (a page that far out is empty either way).
    """

    where: str
    params: tuple[object, ...]
    order: str
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return min((self.page - 1) * self.per_page, INT64_MAX)


#: SQLite's largest INTEGER (and Go's int on 64-bit, which PocketBase parses into).
INT64_MAX: t.Final[int] = 2**63 - 1


def list_query(
    schema: Schema,
    coll: Collection,
    ctx: RequestContext,
    *,
    page: int,
    per_page: int,
    sort: str,
    filter: str,
) -> ListQuery:
    """What a list request for ``coll`` may see, and in which order (rules 1, 3-5).

    :raises Forbidden: listRule locked, or ``@request.``/``@collection.`` in a
        non-superuser's ``filter`` or ``sort``.
    :raises BadRequest: ``filter`` does not compile, or ``sort`` names a hidden
        or unknown field.
    """
    rule = action_rule(schema, coll, "list", ctx)
    if not ctx.superuser and any(
        marker in text for text in (filter, sort) for marker in ("@request.", "@collection.")
    ):
        raise Forbidden("Only superusers can filter by @request.")
    page = max(page, 1)
    per_page = DEFAULT_PER_PAGE if per_page <= 0 else min(per_page, MAX_PER_PAGE)
    where: list[str] = []
    params: list[object] = []
    if rule is not None and not ctx.superuser and not rule.always:
        sql, ps = rule.to_sql(coll.name, ctx)
        where.append(f"({sql})")
        params.extend(ps)
    if filter:
        try:
            compiled = compile_rule(filter, coll, schema, client_filter=True)
        except RuleError:
            raise BadRequest() from None
        if not compiled.always:
            sql, ps = compiled.to_sql(coll.name, ctx)
            where.append(f"({sql})")
            params.extend(ps)
    order = order_by(coll, sort)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return ListQuery(clause, tuple(params), order, page, per_page)


def order_by(coll: Collection, sort: str) -> str:
    """The ORDER BY list for PocketBase's ``sort`` parameter (rule 4).

    :raises BadRequest: a hidden, unknown or malformed field name.
    """
    parts: list[str] = []
    for raw in (p.strip() for p in sort.split(",")):
        if not raw:
            continue
        if raw == "@random":
            parts.append("RANDOM()")
            continue
        direction = "ASC"
        if raw[0] in "+-":
            direction = "DESC" if raw[0] == "-" else "ASC"
            raw = raw[1:]
        f = coll.field(raw)
        if not _SORT_FIELD.match(raw) or f is None or f.hidden:
            raise BadRequest()
        parts.append(f"{quote(raw)} {direction}")
    parts.append("rowid ASC")
    return ", ".join(parts)
