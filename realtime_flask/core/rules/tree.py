"""Step 4, the lowered tree: a small SQL expression tree with two printers.

A node knows how to print itself as SQLite SQL (``sql(Renderer) -> str``,
values as ``?`` placeholders collected by the :class:`Renderer`, identifiers
in double quotes) and how to compute the same thing for one record in Python
(``ev(Env)``, with SQLite's semantics from ``values``).  ``CompiledRule.to_sql``
uses the first, ``CompiledRule.matches`` the second: the backends agree by
construction, and ``tests/unit/core/test_rules.py`` checks it on data.

Three kinds of node:

- :class:`Value`: a value expression (``Lit``, ``Col``, ``Hop``, ``Lower``,
  ``Coalesce``, ``Concat``, ``JsonExtract``, ``JsonLength``, ``ArrayLength``,
  and the current item of a source: ``ItemValue``, ``ItemField``), with the
  affinity SQLite gives it (``aff``);
- :class:`Bool`: a condition, three-valued (None is SQL NULL): ``Truth``,
  ``Cmp``, ``IsNull``, ``LikeCond``, ``Join`` (AND/OR), ``Not``, ``Exists``;
- :class:`Source`: the items of a multi-valued operand, a ``FROM`` clause over
  ``json_each`` in SQL and a Python list in ``ev`` (``EachSource``,
  ``HopSource``).  An empty list is one NULL item (PocketBase's LEFT JOIN).

Nodes are built by ``lower`` per request context and are immutable; ``Env``
holds the per-evaluation state (the record, the relation lookup and its cache,
the current item of each source).
"""

from __future__ import annotations

import abc
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

from realtime_flask.core.rules.context import RelationLookup
from realtime_flask.core.rules.values import AFF_BLOB
from realtime_flask.core.rules.values import AFF_NONE
from realtime_flask.core.rules.values import ASCII_LOWER
from realtime_flask.core.rules.values import Conv
from realtime_flask.core.rules.values import SqlValue
from realtime_flask.core.rules.values import compare
from realtime_flask.core.rules.values import json_array
from realtime_flask.core.rules.values import json_parse
from realtime_flask.core.rules.values import json_sql
from realtime_flask.core.rules.values import like_match
from realtime_flask.core.rules.values import to_text

__all__ = [
    "EMPTY",
    "PERCENT",
    "ArrayLength",
    "Bool",
    "Cmp",
    "Coalesce",
    "Col",
    "Concat",
    "EachSource",
    "Env",
    "Exists",
    "Hop",
    "HopSource",
    "IsNull",
    "ItemField",
    "ItemValue",
    "Join",
    "JsonExtract",
    "JsonLength",
    "LikeCond",
    "Lit",
    "Lower",
    "Not",
    "Renderer",
    "Source",
    "Truth",
    "Value",
]


def quote_identifier(name: str) -> str:
    """``name`` as an SQL identifier: in double quotes, inner ones doubled (the one quoting
    of the package: rule SQL and the store's DDL and queries use it alike)."""
    return '"' + name.replace('"', '""') + '"'


class Renderer:
    """The state of one ``to_sql`` print: the table, the ``?`` parameters, source aliases."""

    def __init__(self, table: str) -> None:
        self.base = quote_identifier(table)
        self.params: list[object] = []
        self.bound: dict[int, str] = {}
        self._n = 0

    def param(self, value: object) -> str:
        self.params.append(value)
        return "?"

    def alias(self, kind: str) -> str:
        self._n += 1
        return quote_identifier(f"__rule_{kind}{self._n}")


class Env:
    """The state of one ``matches`` evaluation: the record, related records, current items.

    :meth:`fetch` raises TypeError when a relation must be followed without a lookup.
    """

    __slots__ = ("_cache", "items", "lookup", "record")

    def __init__(self, record: Mapping[str, object], lookup: RelationLookup | None) -> None:
        self.record = record
        self.lookup = lookup
        self.items: dict[int, object] = {}
        self._cache: dict[tuple[str, str], Mapping[str, object] | None] = {}

    def fetch(self, collection_id: str, ids: Sequence[str]) -> dict[str, Mapping[str, object]]:
        missing = [i for i in dict.fromkeys(ids) if (collection_id, i) not in self._cache]
        if missing:
            if self.lookup is None:
                raise TypeError("this rule follows a relation: matches() needs a RelationLookup")
            found: dict[str, Mapping[str, object]] = {}
            for rec in self.lookup(collection_id, missing):
                rid = rec.get("id")
                if isinstance(rid, str):
                    found.setdefault(rid, rec)
            for i in missing:
                self._cache[(collection_id, i)] = found.get(i)
        out: dict[str, Mapping[str, object]] = {}
        for i in ids:
            hit = self._cache[(collection_id, i)]
            if hit is not None:
                out[i] = hit
        return out


class Value(abc.ABC):
    """A value expression: ``sql`` prints it, ``ev`` computes it for one row."""

    __slots__ = ()
    aff: int

    @abc.abstractmethod
    def sql(self, r: Renderer) -> str: ...

    @abc.abstractmethod
    def ev(self, env: Env) -> SqlValue: ...


class Bool(abc.ABC):
    """A condition; ``ev`` is three-valued (None = SQL NULL)."""

    __slots__ = ()

    @abc.abstractmethod
    def sql(self, r: Renderer) -> str: ...

    @abc.abstractmethod
    def ev(self, env: Env) -> bool | None: ...


class Source(abc.ABC):
    """The items of a multi-valued operand: a FROM clause, or a Python list."""

    __slots__ = ()

    @abc.abstractmethod
    def from_sql(self, r: Renderer) -> str: ...

    @abc.abstractmethod
    def items(self, env: Env) -> list[object]: ...


@dataclass(frozen=True, slots=True, eq=False)
class Lit(Value):
    """A constant: bound as ``?``, or printed (NULL, 1/0, ``''``, small ints)."""

    value: SqlValue
    bound: bool = True
    like: str = ""
    aff: int = AFF_NONE

    def sql(self, r: Renderer) -> str:
        if self.bound:
            return r.param(self.value)
        if self.value is None:
            return "NULL"
        if isinstance(self.value, str):
            return "'" + self.value.replace("'", "''") + "'"
        return str(self.value)

    def ev(self, env: Env) -> SqlValue:
        return self.value


EMPTY = Lit("", bound=False)
PERCENT = Lit("%", bound=False)


@dataclass(frozen=True, slots=True, eq=False)
class Col(Value):
    """A column of the rule's own table."""

    column: str
    conv: Conv
    aff: int

    def sql(self, r: Renderer) -> str:
        return f"{r.base}.{quote_identifier(self.column)}"

    def ev(self, env: Env) -> SqlValue:
        return self.conv(env.record.get(self.column))


@dataclass(frozen=True, slots=True, eq=False)
class Hop(Value):
    """``rel.column`` through a single relation: a scalar subquery."""

    rel: Col
    table: str
    collection_id: str
    column: str
    conv: Conv
    aff: int

    def sql(self, r: Renderer) -> str:
        a = r.alias("h")
        return (
            f"(SELECT {a}.{quote_identifier(self.column)} "
            f"FROM {quote_identifier(self.table)} AS {a} "
            f'WHERE {a}."id" = {self.rel.sql(r)})'
        )

    def ev(self, env: Env) -> SqlValue:
        rid = self.rel.ev(env)
        if not isinstance(rid, str) or not rid:
            return None
        rec = env.fetch(self.collection_id, [rid]).get(rid)
        return None if rec is None else self.conv(rec.get(self.column))


def _array_or_self(x: str) -> str:
    return (
        f"CASE WHEN (CASE WHEN json_valid({x}) THEN json_type({x}) = 'array' ELSE 0 END) "
        f"THEN {x} ELSE json_array({x}) END"
    )


def _items_of(v: SqlValue) -> list[SqlValue]:
    """``json_each(<array or json_array(v)>)`` in Python."""
    arr = json_array(v)
    return [v] if arr is None else arr


@dataclass(frozen=True, slots=True, eq=False)
class EachSource(Source):
    """The items of a select/relation column, or of a bound JSON array."""

    of: Value

    def from_sql(self, r: Renderer) -> str:
        o, j = r.alias("o"), r.alias("j")
        r.bound[id(self)] = j
        if isinstance(self.of, Lit) and self.of.bound:
            each = f"json_each({self.of.sql(r)})"
        else:
            each = f"json_each({_array_or_self(self.of.sql(r))})"
        return f"(SELECT 1) AS {o} LEFT JOIN {each} AS {j}"

    def items(self, env: Env) -> list[object]:
        values: list[object] = list(_items_of(self.of.ev(env)))
        return values or [None]


@dataclass(frozen=True, slots=True, eq=False)
class HopSource(Source):
    """The target records of a multi relation (None for a dangling id)."""

    rel: Col
    table: str
    collection_id: str

    def from_sql(self, r: Renderer) -> str:
        o, j, h = r.alias("o"), r.alias("j"), r.alias("t")
        r.bound[id(self)] = h
        return (
            f"(SELECT 1) AS {o} LEFT JOIN json_each({_array_or_self(self.rel.sql(r))}) AS {j} "
            f'LEFT JOIN {quote_identifier(self.table)} AS {h} ON {h}."id" = {j}."value"'
        )

    def items(self, env: Env) -> list[object]:
        ids = _items_of(self.rel.ev(env))
        found = env.fetch(self.collection_id, [i for i in ids if isinstance(i, str)])
        recs: list[object] = [found.get(i) if isinstance(i, str) else None for i in ids]
        return recs or [None]


@dataclass(frozen=True, slots=True, eq=False)
class ItemValue(Value):
    """The current item of an ``EachSource`` (``json_each.value``: BLOB affinity)."""

    source: EachSource
    aff: int = AFF_BLOB

    def sql(self, r: Renderer) -> str:
        return f'{r.bound[id(self.source)]}."value"'

    def ev(self, env: Env) -> SqlValue:
        return t.cast(SqlValue, env.items[id(self.source)])


@dataclass(frozen=True, slots=True, eq=False)
class ItemField(Value):
    """A column of the current target record of a ``HopSource``."""

    source: HopSource
    column: str
    conv: Conv
    aff: int

    def sql(self, r: Renderer) -> str:
        return f"{r.bound[id(self.source)]}.{quote_identifier(self.column)}"

    def ev(self, env: Env) -> SqlValue:
        rec = t.cast("Mapping[str, object] | None", env.items[id(self.source)])
        return None if rec is None else self.conv(rec.get(self.column))


@dataclass(frozen=True, slots=True, eq=False)
class Lower(Value):
    x: Value
    aff: int = AFF_NONE

    def sql(self, r: Renderer) -> str:
        return f"LOWER({self.x.sql(r)})"

    def ev(self, env: Env) -> SqlValue:
        v = self.x.ev(env)
        return None if v is None else to_text(v).translate(ASCII_LOWER)


@dataclass(frozen=True, slots=True, eq=False)
class Coalesce(Value):
    x: Value
    y: Value
    aff: int = AFF_NONE

    def sql(self, r: Renderer) -> str:
        return f"COALESCE({self.x.sql(r)}, {self.y.sql(r)})"

    def ev(self, env: Env) -> SqlValue:
        v = self.x.ev(env)
        return self.y.ev(env) if v is None else v


@dataclass(frozen=True, slots=True, eq=False)
class Concat(Value):
    parts: tuple[Value, ...]
    aff: int = AFF_NONE

    def sql(self, r: Renderer) -> str:
        return "(" + " || ".join(p.sql(r) for p in self.parts) + ")"

    def ev(self, env: Env) -> SqlValue:
        out: list[str] = []
        for p in self.parts:
            v = p.ev(env)
            if v is None:
                return None
            out.append(to_text(v))
        return "".join(out)


@dataclass(frozen=True, slots=True, eq=False)
class JsonExtract(Value):
    """``json_extract(x, path)`` of valid JSON text, else NULL."""

    x: Value
    path: tuple[str, ...]
    aff: int = AFF_NONE

    def sql(self, r: Renderer) -> str:
        x = self.x.sql(r)
        spec = "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in self.path)
        return (
            f"(CASE WHEN json_valid({x}) THEN json_extract({self.x.sql(r)}, {r.param(spec)}) END)"
        )

    def ev(self, env: Env) -> SqlValue:
        ok, value = json_parse(self.x.ev(env))
        if not ok:
            return None
        for p in self.path:
            if p.isdigit():
                if not isinstance(value, list) or int(p) >= len(value):
                    return None
                value = value[int(p)]
            elif isinstance(value, dict) and p in value:
                value = value[p]
            else:
                return None
        return json_sql(value)


@dataclass(frozen=True, slots=True, eq=False)
class JsonLength(Value):
    """Items of a JSON array; 0 for anything else."""

    x: Value
    aff: int = AFF_NONE

    def sql(self, r: Renderer) -> str:
        x = self.x.sql(r)
        return (
            f"(CASE WHEN json_valid({x}) THEN (CASE WHEN json_type({x}) = 'array' "
            f"THEN json_array_length({x}) ELSE 0 END) ELSE 0 END)"
        )

    def ev(self, env: Env) -> SqlValue:
        ok, value = json_parse(self.x.ev(env))
        return len(value) if ok and isinstance(value, list) else 0


@dataclass(frozen=True, slots=True, eq=False)
class ArrayLength(Value):
    """PocketBase's ``JSONArrayLength``: array items, 0 for ''/NULL, else 1."""

    x: Value
    aff: int = AFF_NONE

    def sql(self, r: Renderer) -> str:
        x = self.x.sql(r)
        return (
            f"(CASE WHEN (CASE WHEN json_valid({x}) THEN json_type({x}) = 'array' ELSE 0 END) "
            f"THEN json_array_length({x}) WHEN {x} IS NULL OR {x} = '' THEN 0 ELSE 1 END)"
        )

    def ev(self, env: Env) -> SqlValue:
        v = self.x.ev(env)
        arr = json_array(v)
        if arr is not None:
            return len(arr)
        return 0 if v is None or v == "" else 1


@dataclass(frozen=True, slots=True, eq=False)
class Truth(Bool):
    value: bool

    def sql(self, r: Renderer) -> str:
        return "1" if self.value else "0"

    def ev(self, env: Env) -> bool | None:
        return self.value


@dataclass(frozen=True, slots=True, eq=False)
class Cmp(Bool):
    op: str  # = < <= > >= IS, IS NOT
    a: Value
    b: Value

    def sql(self, r: Renderer) -> str:
        return f"({self.a.sql(r)} {self.op} {self.b.sql(r)})"

    def ev(self, env: Env) -> bool | None:
        return compare(self.op, self.a.ev(env), self.a.aff, self.b.ev(env), self.b.aff)


@dataclass(frozen=True, slots=True, eq=False)
class IsNull(Bool):
    x: Value
    negate: bool = False

    def sql(self, r: Renderer) -> str:
        return f"({self.x.sql(r)} IS {'NOT ' if self.negate else ''}NULL)"

    def ev(self, env: Env) -> bool | None:
        return (self.x.ev(env) is None) != self.negate


@dataclass(frozen=True, slots=True, eq=False)
class LikeCond(Bool):
    a: Value
    b: Value
    negate: bool

    def sql(self, r: Renderer) -> str:
        op = "NOT LIKE" if self.negate else "LIKE"
        return f"({self.a.sql(r)} {op} {self.b.sql(r)} ESCAPE '\\')"

    def ev(self, env: Env) -> bool | None:
        a, b = self.a.ev(env), self.b.ev(env)
        if a is None or b is None:
            return None
        return like_match(to_text(a), to_text(b)) != self.negate


@dataclass(frozen=True, slots=True, eq=False)
class Join(Bool):
    conj: bool  # True: AND, False: OR
    items: tuple[Bool, ...]

    def sql(self, r: Renderer) -> str:
        return "(" + (" AND " if self.conj else " OR ").join(i.sql(r) for i in self.items) + ")"

    def ev(self, env: Env) -> bool | None:
        unknown = False
        for item in self.items:
            v = item.ev(env)
            if v is None:
                unknown = True
            elif v is not self.conj:
                return v
        return None if unknown else self.conj


@dataclass(frozen=True, slots=True, eq=False)
class Not(Bool):
    x: Bool

    def sql(self, r: Renderer) -> str:
        return f"(NOT {self.x.sql(r)})"

    def ev(self, env: Env) -> bool | None:
        v = self.x.ev(env)
        return None if v is None else not v


@dataclass(frozen=True, slots=True, eq=False)
class Exists(Bool):
    sources: tuple[Source, ...]
    pred: Bool

    def sql(self, r: Renderer) -> str:
        froms = " CROSS JOIN ".join(s.from_sql(r) for s in self.sources)
        return f"EXISTS (SELECT 1 FROM {froms} WHERE {self.pred.sql(r)})"

    def ev(self, env: Env) -> bool | None:
        lists = [s.items(env) for s in self.sources]
        keys = [id(s) for s in self.sources]
        try:
            for combo in product(*lists):
                env.items.update(zip(keys, combo, strict=True))
                if self.pred.ev(env) is True:
                    return True
            return False
        finally:
            for k in keys:
                env.items.pop(k, None)
