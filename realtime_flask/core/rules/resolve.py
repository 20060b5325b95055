"""Step 2, syntax tree to resolved tree: every identifier checked against the collection.

``Resolver(collection, schema, client_filter).expr(parse(source))`` turns each
``Comparison`` into a :class:`ResolvedCmp` of two :data:`Ref` (a constant, a
field of the collection, a field one relation hop away, an ``@request.*``
value or a date macro) and each ``And``/``Or`` into a :class:`ResolvedJoin`.
It is done once per rule, at compile time; what depends on the request is left
to ``lower``.  It raises :class:`RuleResolveError` for an unknown or (in client
filters) hidden field, an unknown identifier or a modifier that does not apply.
It also records what ``CompiledRule`` reports: the names used, whether
``matches`` must follow a relation (``needs_lookup``), whether a client filter
compares an auth collection's ``email``.

Identifiers (PocketBase 0.40.6: ``core/record_field_resolver*.go``):

- a field (``title``), a json path (``meta.a.b``, ``tags.0``), one hop through a
  relation (``owner.name``, ``editors.name``, ``owner.meta.a``);
- ``collectionId``/``collectionName`` as constants, ``null``/``true``/``false``
  (case-insensitive, when no field has the name);
- ``@request.auth.<f>``, ``@request.body|headers|query.<key...>``,
  ``@request.method``, ``@request.context``, and the date macros (``@now``,
  ``@todayStart``, ``@year``...);
- modifiers: ``:lower`` everywhere, ``:length`` on select/relation/json,
  ``:each`` on select/relation, ``:isset`` on ``@request.body|headers|query``
  (and ``:length``/``:each`` on a body key naming a select/relation).

Deliberate divergences from PocketBase -- don't "fix" them without reading why:

- Supported identifiers are a subset: one relation hop (no ``_via_`` back
  relations, no hops after ``@request.auth``/``@request.body``), no
  ``@collection.*``, no ``:changed``.  They fail at compile time.
- Hopping into a collection does not apply that collection's list rule (PocketBase
  ANDs it into client filters); the caller must decide whether to allow hops.
- ``collectionId``/``collectionName`` are usable as constants, ``json:length``
  counts array items (PocketBase ignores the modifier there), and a modifier
  PocketBase would silently ignore (``title:isset``) is an error.
"""

from __future__ import annotations

import re
import typing as t
from collections.abc import Sequence
from dataclasses import dataclass

from realtime_flask.core.rules.catalog import Catalog
from realtime_flask.core.rules.catalog import CatalogCollection
from realtime_flask.core.rules.catalog import CatalogField
from realtime_flask.core.rules.syntax import And
from realtime_flask.core.rules.syntax import Comparison
from realtime_flask.core.rules.syntax import Expr
from realtime_flask.core.rules.syntax import Number
from realtime_flask.core.rules.syntax import Operand
from realtime_flask.core.rules.syntax import RuleError
from realtime_flask.core.rules.syntax import Text
from realtime_flask.core.rules.values import SqlValue
from realtime_flask.core.rules.values import go_float

__all__ = [
    "ConstRef",
    "FieldRef",
    "HopRef",
    "MacroRef",
    "Ref",
    "RequestRef",
    "ResolvedCmp",
    "ResolvedExpr",
    "ResolvedJoin",
    "Resolver",
    "RuleResolveError",
]


class RuleResolveError(RuleError):
    """An identifier cannot be resolved: unknown or hidden field, bad modifier, ..."""


_MODIFIERS = frozenset({"lower", "length", "each", "isset", "changed"})
_MULTI_TYPES = frozenset({"select", "relation", "file"})
_DATE_MACROS = frozenset(
    {
        "@now",
        "@yesterday",
        "@tomorrow",
        "@todayStart",
        "@todayEnd",
        "@monthStart",
        "@monthEnd",
        "@yearStart",
        "@yearEnd",
    }
)
_INT_MACROS = frozenset({"@second", "@minute", "@hour", "@day", "@month", "@weekday", "@year"})
_MACROS = _DATE_MACROS | _INT_MACROS
_SEGMENT = re.compile(r"\w+", re.ASCII)


@dataclass(frozen=True, slots=True)
class ConstRef:
    """A constant: a literal, ``null``/``true``/``false``, ``collectionId``/``collectionName``."""

    value: SqlValue
    bound: bool
    like: str
    lower: bool = False


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A field of the rule's own collection (``path``: a json path into it)."""

    field: CatalogField
    modifier: str
    path: tuple[str, ...]
    email: bool  # client filter on an auth collection's email


@dataclass(frozen=True, slots=True)
class HopRef:
    """``rel.field``: a field of the collection a relation points to."""

    rel: CatalogField
    target: CatalogCollection
    field: CatalogField
    modifier: str
    path: tuple[str, ...]
    email: bool


@dataclass(frozen=True, slots=True)
class RequestRef:
    """``@request.<section>.<path...>``, read from the ``RequestContext`` when lowered."""

    section: str  # auth body headers query method context
    path: tuple[str, ...]
    modifier: str
    body_field: CatalogField | None  # the collection field a one-segment body key names
    number: bool  # the last key names a number field: numeric strings become numbers


@dataclass(frozen=True, slots=True)
class MacroRef:
    """A date macro (``@now``, ``@todayStart``, ``@year``...), computed when lowered."""

    name: str


Ref: t.TypeAlias = ConstRef | FieldRef | HopRef | RequestRef | MacroRef


@dataclass(frozen=True, slots=True)
class ResolvedCmp:
    """A resolved ``left op right`` (``op`` as written, ``?`` prefix included)."""

    op: str
    left: Ref
    right: Ref


@dataclass(frozen=True, slots=True)
class ResolvedJoin:
    """Resolved terms joined by AND (``conj``) or OR."""

    conj: bool
    items: tuple[ResolvedExpr, ...]


ResolvedExpr: t.TypeAlias = ResolvedCmp | ResolvedJoin


def _split_modifier(segment: str, name: str) -> tuple[str, str]:
    parts = segment.split(":")
    if len(parts) != 2:
        return segment, ""
    if parts[1] not in _MODIFIERS:
        raise RuleResolveError(f"unknown modifier {parts[1]!r} in {name!r}")
    return parts[0], parts[1]


class Resolver:
    """Resolves one rule's syntax tree against ``collection`` (see the module docstring)."""

    def __init__(self, collection: CatalogCollection, schema: Catalog, client_filter: bool) -> None:
        self.collection = collection
        self.schema = schema
        self.client_filter = client_filter
        self.names: set[str] = set()
        self.needs_lookup = False
        self.email = False

    def expr(self, e: Expr) -> ResolvedExpr:
        if isinstance(e, Comparison):
            return ResolvedCmp(e.op, self.ref(e.left), self.ref(e.right))
        return ResolvedJoin(isinstance(e, And), tuple(self.expr(x) for x in e.terms))

    def ref(self, op: Operand) -> Ref:
        if isinstance(op, Text):
            return ConstRef(op.value, True, op.value)
        if isinstance(op, Number):
            return ConstRef(op.value, True, go_float(op.value))
        name = op.name
        self.names.add(name)
        if name in _MACROS:
            return MacroRef(name)
        if name.startswith("@"):
            return self.request(name)
        try:
            return self.field_path(name)
        except RuleResolveError:
            keyword = name.lower()
            if keyword == "null":
                return ConstRef(None, False, "")
            if keyword in ("true", "false"):
                return ConstRef(int(keyword == "true"), False, keyword)
            raise

    def field(self, coll: CatalogCollection, name: str, full: str) -> CatalogField:
        f = coll.field(name)
        if f is None:
            where = "" if name == full else f" in {full!r}"
            raise RuleResolveError(f"unknown field {name!r}{where}")
        if f.hidden and self.client_filter:
            raise RuleResolveError(f"hidden field {name!r} cannot be filtered")
        return f

    def check_modifier(self, f: CatalogField, modifier: str, name: str, *, hop: bool) -> None:
        if modifier in ("", "lower"):
            return
        if modifier == "length" and (f.type in _MULTI_TYPES or f.type in ("json", "geoPoint")):
            return
        if modifier == "each" and f.type in _MULTI_TYPES and not hop:
            return
        raise RuleResolveError(f"modifier ':{modifier}' is not supported in {name!r}")

    def json_path(self, segments: Sequence[str], name: str) -> tuple[tuple[str, ...], str]:
        *head, last = segments
        last, modifier = _split_modifier(last, name)
        path = (*head, last)
        for p in path:
            if not _SEGMENT.fullmatch(p) or (p.isdigit() and len(p) > 9):
                raise RuleResolveError(f"invalid json path in {name!r}")
        if modifier not in ("", "lower"):
            raise RuleResolveError(f"modifier ':{modifier}' is not supported in {name!r}")
        return path, modifier

    def is_email(self, coll: CatalogCollection, f: CatalogField) -> bool:
        hit = self.client_filter and coll.is_auth and f.name == "email"
        self.email = self.email or hit
        return hit

    def field_path(self, name: str) -> Ref:
        segments = name.split(".")
        coll = self.collection
        if len(segments) == 1:
            fname, modifier = _split_modifier(name, name)
            if fname in ("collectionId", "collectionName") and coll.field(fname) is None:
                if modifier not in ("", "lower"):
                    raise RuleResolveError(f"modifier ':{modifier}' is not supported in {name!r}")
                value = coll.id if fname == "collectionId" else coll.name
                return ConstRef(value, True, value, lower=modifier == "lower")
            f = self.field(coll, fname, name)
            self.check_modifier(f, modifier, name, hop=False)
            return FieldRef(f, modifier, (), self.is_email(coll, f))
        f = self.field(coll, segments[0], name)
        if f.type in ("json", "geoPoint"):
            path, modifier = self.json_path(segments[1:], name)
            return FieldRef(f, modifier, path, False)
        if f.type != "relation":
            raise RuleResolveError(f"unknown relation path {name!r}")
        target = self.schema.get(f.collection_id)
        if target is None:
            raise RuleResolveError(f"unknown relation path {name!r}")
        rest = segments[1:]
        if len(rest) == 1:
            tname, modifier = _split_modifier(rest[0], name)
            tf = self.field(target, tname, name)
            self.check_modifier(tf, modifier, name, hop=True)
            tpath: tuple[str, ...] = ()
        else:
            tf = self.field(target, rest[0], name)
            if tf.type not in ("json", "geoPoint"):
                raise RuleResolveError(
                    f"unknown relation path {name!r} (only one relation hop is supported)"
                )
            tpath, modifier = self.json_path(rest[1:], name)
        if f.multiple or tf.name != "id":
            self.needs_lookup = True
        return HopRef(f, target, tf, modifier, tpath, self.is_email(target, tf))

    def request(self, name: str) -> Ref:
        segments = name.split(".")
        if segments[0] == "@collection":
            raise RuleResolveError(
                f"unsupported identifier {name!r} (@collection is not supported)"
            )
        if segments[0] != "@request" or len(segments) < 2:
            raise RuleResolveError(f"unknown identifier {name!r}")
        if len(segments) == 2:
            section, modifier = _split_modifier(segments[1], name)
            if section not in ("method", "context"):
                raise RuleResolveError(f"unknown identifier {name!r}")
            if modifier not in ("", "lower"):
                raise RuleResolveError(f"modifier ':{modifier}' is not supported in {name!r}")
            return RequestRef(section, (), modifier, None, False)
        section = segments[1]
        if section not in ("auth", "body", "headers", "query"):
            raise RuleResolveError(f"unknown identifier {name!r}")
        last, modifier = _split_modifier(segments[-1], name)
        path = (*segments[2:-1], last)
        if any(not p for p in path):
            raise RuleResolveError(f"unknown identifier {name!r}")
        coll = self.collection
        body_field: CatalogField | None = None
        allowed: tuple[str, ...] = ("", "lower") if section == "auth" else ("", "lower", "isset")
        if section == "auth" and len(path) > 1:
            raise RuleResolveError(
                f"unsupported identifier {name!r} (no relation hops through @request.auth)"
            )
        if section == "body":
            first = coll.field(path[0])
            if first is not None and first.type == "relation" and len(path) > 1:
                raise RuleResolveError(
                    f"unsupported identifier {name!r} (no relation hops through @request.body)"
                )
            if len(path) == 1 and first is not None:
                body_field = first
                if first.type in _MULTI_TYPES:
                    allowed = ("", "lower", "isset", "length", "each")
        if modifier not in allowed:
            raise RuleResolveError(f"modifier ':{modifier}' is not supported in {name!r}")
        number_field = coll.field(path[-1])
        number = number_field is not None and number_field.type == "number"
        return RequestRef(section, path, modifier, body_field, number)
