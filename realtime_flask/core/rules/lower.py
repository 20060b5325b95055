"""Step 3, resolved tree to lowered tree: the meaning of each comparison, per request.

``Lowering(collection, ctx, client_filter).expr(resolved) -> tree.Bool``: the
request's values (``@request.*``, the date macros) become constants and every
comparison becomes the SQL condition PocketBase would run.  ``CompiledRule``
lowers once per ``RequestContext`` object and keeps the last tree.  It raises
ValueError only for a malformed ``RequestContext.now``.

Semantics (PocketBase 0.40.6: PROTOCOL-REST.md section 7, ``tools/search/filter.go``,
``core/record_field_resolver*.go``):

- ``=``/``!=`` follow PocketBase's ``resolveEqualExpr``: NULL and ``''`` are
  equal; ``!=`` is ``IS NOT`` (true against NULL); json values use ``IS``.
- Comparisons use SQLite affinity (see ``values``); ``true``/``false`` are 1/0,
  ``null`` is NULL.  Bound constants are converted here, in Python, by the
  affinity the comparison would apply.
- ``~``/``!~`` are ``LIKE``/``NOT LIKE ... ESCAPE '\\'`` (ASCII case-insensitive).
  A bound right operand without an unescaped ``%`` is wrapped as ``%v%`` with
  ``\\ % _`` escaped (PocketBase's ``wrapLikeParams``); a column on the right
  becomes ``'%' || col || '%'``.
- ``:lower`` is SQLite ``LOWER`` (ASCII only); ``:length`` counts the items of a
  select/relation (0 when empty) or of a JSON array (0 for anything else);
  ``:each`` turns a select/relation into its items; ``:isset`` (``@request.*``
  only) is 1 when the key is present.
- Multi-valued operands are the items of ``multirel.field`` (one hop through a
  multi relation), ``field:each`` and ``@request.body.field:each``.  An empty
  list counts as one NULL item (PocketBase's LEFT JOIN).  ``?op`` means "some
  item is true"; a plain op means "some item is true and none is false"
  (PocketBase's ``NOT EXISTS`` of a failing item; NULL results do not fail).
- A *bare* multi field (``editors``, ``kind``) is its stored JSON text, exactly
  as in PocketBase: ``editors ?= 'id'`` matches nothing, ``editors ~ 'id'``
  matches the text; write ``editors.id ?= 'id'`` or ``editors:each ?= 'id'``.
  A json field is ``json_extract(col, '$')``: ``tags ?= 'a'`` does not look
  into arrays (only the JSON string ``"a"`` matches), ``tags ~ 'a'`` matches
  the JSON text; ``tags.0``/``meta.a.b`` are JSON paths.
- ``@request.auth.<f>`` reads ``RequestContext.auth`` (NULL for guests, so a
  guest's ``owner = @request.auth.id`` matches ownerless records, as in
  PocketBase: add ``@request.auth.id != ''``).  ``@request.body/headers/query``
  values are bound as PocketBase binds them: numbers as float, bools as 1/0,
  lists and objects as JSON text, and a numeric string named after a number
  field as a number.
- Client filters (``client_filter=True``) reject hidden fields (in ``resolve``),
  and a comparison on an auth collection's ``email`` only holds where
  ``emailVisibility`` is true or the row is the requester's own record
  (superusers, ``RequestContext.superuser``, skip this).

Deliberate divergences from PocketBase -- don't "fix" them without reading why:

- Each comparison is evaluated on its own.  PocketBase joins a multi relation
  once for the whole filter, so ``editors.name ?= 'a' && editors.name ?= 'b'``
  needs a single editor named both; here it means what it says.
- ``@request.auth.<f>`` always reads the context's auth record; PocketBase
  joins the auth table for fields other than id/collectionId/collectionName/
  email/emailVisibility/verified.
- A hidden email also matches the requester's own record (PocketBase checks
  ``emailVisibility`` only).
"""

from __future__ import annotations

import math
import re
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from realtime_flask.core.rules.catalog import CatalogCollection
from realtime_flask.core.rules.catalog import CatalogField
from realtime_flask.core.rules.context import RequestContext
from realtime_flask.core.rules.resolve import ConstRef
from realtime_flask.core.rules.resolve import FieldRef
from realtime_flask.core.rules.resolve import HopRef
from realtime_flask.core.rules.resolve import MacroRef
from realtime_flask.core.rules.resolve import Ref
from realtime_flask.core.rules.resolve import RequestRef
from realtime_flask.core.rules.resolve import ResolvedCmp
from realtime_flask.core.rules.resolve import ResolvedExpr
from realtime_flask.core.rules.tree import EMPTY
from realtime_flask.core.rules.tree import PERCENT
from realtime_flask.core.rules.tree import ArrayLength
from realtime_flask.core.rules.tree import Bool
from realtime_flask.core.rules.tree import Cmp
from realtime_flask.core.rules.tree import Coalesce
from realtime_flask.core.rules.tree import Col
from realtime_flask.core.rules.tree import Concat
from realtime_flask.core.rules.tree import EachSource
from realtime_flask.core.rules.tree import Exists
from realtime_flask.core.rules.tree import Hop
from realtime_flask.core.rules.tree import HopSource
from realtime_flask.core.rules.tree import IsNull
from realtime_flask.core.rules.tree import ItemField
from realtime_flask.core.rules.tree import ItemValue
from realtime_flask.core.rules.tree import Join
from realtime_flask.core.rules.tree import JsonExtract
from realtime_flask.core.rules.tree import JsonLength
from realtime_flask.core.rules.tree import LikeCond
from realtime_flask.core.rules.tree import Lit
from realtime_flask.core.rules.tree import Lower
from realtime_flask.core.rules.tree import Not
from realtime_flask.core.rules.tree import Source
from realtime_flask.core.rules.tree import Truth
from realtime_flask.core.rules.tree import Value
from realtime_flask.core.rules.values import AFF_NUMERIC
from realtime_flask.core.rules.values import AFF_TEXT
from realtime_flask.core.rules.values import SqlValue
from realtime_flask.core.rules.values import as_numeric
from realtime_flask.core.rules.values import compare_affinity
from realtime_flask.core.rules.values import conv_int
from realtime_flask.core.rules.values import conv_text
from realtime_flask.core.rules.values import field_conv
from realtime_flask.core.rules.values import go_float
from realtime_flask.core.rules.values import go_string
from realtime_flask.core.rules.values import json_text_lenient
from realtime_flask.core.rules.values import to_text
from realtime_flask.core.rules.values import wrap_like

__all__ = ["Lowered", "Lowering"]

_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True, eq=False)
class Lowered:
    """A lowered operand: its value, the source it iterates, extra conditions it needs."""

    node: Value
    source: Source | None = None
    disabled: bool = False  # PocketBase's NullFallbackDisabled (json): = becomes IS
    conds: tuple[Bool, ...] = ()


def _param_of(node: Value) -> Lit | None:
    inner = node.x if isinstance(node, Lower) else node
    return inner if isinstance(inner, Lit) and inner.bound else None


def _is_empty(node: Value) -> bool:
    if isinstance(node, Lit) and not node.bound:
        return node.value is None
    p = _param_of(node)
    return p is not None and (p.value is None or p.value == "")


def _is_known(node: Value) -> bool:
    if isinstance(node, Lit) and not node.bound:
        return isinstance(node.value, int) and node.value in (0, 1)
    p = _param_of(node)
    return p is not None and p.value is not None and p.value != ""


def _preconvert(x: Value, aff: int) -> Value:
    if not isinstance(x, Lit) or not x.bound:
        return x
    if aff == AFF_NUMERIC and isinstance(x.value, str):
        n = as_numeric(x.value)
        return x if isinstance(n, str) else Lit(n, like=x.like)
    if aff == AFF_TEXT and isinstance(x.value, (int, float)):
        return Lit(to_text(x.value), like=x.like)
    return x


def _cmp(op: str, a: Value, b: Value) -> Cmp:
    """``a op b``, with bound constants already converted by the comparison's affinity.

    SQLite would convert them at run time, with the same result except in the
    last digit for some values (``sqlite3AtoF``/``%!.15g`` are not correctly
    rounded before SQLite 3.43).  Converting here makes both backends use
    Python's exact conversion.
    """
    aff = compare_affinity(a.aff, b.aff)
    return Cmp(op, _preconvert(a, aff), _preconvert(b, aff))


def _equal(a: Lowered, b: Lowered, eq: bool) -> Bool:
    """PocketBase's ``resolveEqualExpr`` (= and !=, NULL equal to '')."""
    op = "=" if eq else "IS NOT"
    if a.disabled or b.disabled:
        return _cmp("IS" if eq else "IS NOT", a.node, b.node)
    ea, eb = _is_empty(a.node), _is_empty(b.node)
    if ea and eb:
        return Truth(eq)
    if _is_known(a.node) or _is_known(b.node):
        return _cmp(op, EMPTY if ea else a.node, EMPTY if eb else b.node)
    if ea or eb:
        other = b.node if ea else a.node
        pair = (EMPTY, other) if ea else (other, EMPTY)
        return Join(not eq, (_cmp(op, *pair), IsNull(other, negate=not eq)))
    return Cmp(op, Coalesce(a.node, EMPTY), Coalesce(b.node, EMPTY))


def _like_cond(a: Lowered, b: Lowered, negate: bool) -> Bool:
    right = b.node
    lit = _param_of(right)
    if lit is not None:
        pattern = Lit(wrap_like(lit.like), like=wrap_like(lit.like))
        right = pattern if right is lit else Lower(pattern)
    else:
        right = Concat((PERCENT, right, PERCENT))
    return LikeCond(a.node, right, negate)


def _extract(root: object, path: Sequence[str]) -> tuple[bool, object]:
    """PocketBase's ``extractNestedVal``: maps by key, lists by index."""
    value = root
    for key in path:
        if isinstance(value, Mapping):
            if key not in value:
                return False, None
            value = value[key]
        elif isinstance(value, (list, tuple)):
            if not key.isdigit() or len(key) > 9 or int(key) >= len(value):
                return False, None
            value = value[int(key)]
        else:
            return False, None
    return True, value


def _parse_now(text: str) -> datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"RequestContext.now must look like '2026-01-02 03:04:05.678Z', got {text!r}")


def _datetime_text(d: datetime) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _month_end(d: datetime) -> datetime:
    first_next = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first_next - timedelta(days=1)


class Lowering:
    """Lowers one resolved tree for one request context (see the module docstring)."""

    def __init__(
        self, collection: CatalogCollection, ctx: RequestContext, client_filter: bool
    ) -> None:
        self.collection = collection
        self.ctx = ctx
        self.hide_email = client_filter and not ctx.superuser
        self._now: datetime | None = None

    def expr(self, e: ResolvedExpr) -> Bool:
        if isinstance(e, ResolvedCmp):
            return self.cmp(e)
        return Join(e.conj, tuple(self.expr(x) for x in e.items))

    def cmp(self, c: ResolvedCmp) -> Bool:
        a, b = self.operand(c.left), self.operand(c.right)
        any_op = c.op.startswith("?")
        op = c.op[1:] if any_op else c.op
        pred: Bool
        if op in ("=", "!="):
            pred = _equal(a, b, op == "=")
        elif op in ("~", "!~"):
            pred = _like_cond(a, b, op == "!~")
        else:
            pred = _cmp(op, a.node, b.node)
        if a.conds or b.conds:
            pred = Join(True, (pred, *a.conds, *b.conds))
        sources = tuple(s for s in (a.source, b.source) if s is not None)
        if not sources:
            return pred
        found = Exists(sources, pred)
        if any_op:
            return found
        return Join(True, (found, Not(Exists(sources, Not(pred)))))

    def operand(self, ref: Ref) -> Lowered:
        if isinstance(ref, ConstRef):
            lit = Lit(ref.value, ref.bound, ref.like)
            return Lowered(Lower(lit) if ref.lower else lit)
        if isinstance(ref, MacroRef):
            return Lowered(self.macro(ref.name))
        if isinstance(ref, RequestRef):
            return self.request(ref)
        if isinstance(ref, FieldRef):
            conv, aff = field_conv(ref.field)
            col = Col(ref.field.name, conv, aff)
            conds: tuple[Bool, ...] = ()
            if ref.email and self.hide_email:
                vis = Col("emailVisibility", conv_int, AFF_NUMERIC)
                conds = (self.visible(vis, Col("id", conv_text, AFF_TEXT), self.collection),)
            return self.shape(ref.field, col, ref.modifier, ref.path, None, conds)
        return self.hop(ref)

    def hop(self, ref: HopRef) -> Lowered:
        rel = Col(ref.rel.name, *field_conv(ref.rel))
        conv, aff = field_conv(ref.field)
        table, cid = ref.target.name, ref.target.id
        source: Source | None = None
        value: Value
        vis: Value
        rid: Value
        if ref.rel.multiple:
            hs = HopSource(rel, table, cid)
            source = hs
            value = ItemField(hs, ref.field.name, conv, aff)
            vis = ItemField(hs, "emailVisibility", conv_int, AFF_NUMERIC)
            rid = ItemField(hs, "id", conv_text, AFF_TEXT)
        else:
            value = (
                rel if ref.field.name == "id" else Hop(rel, table, cid, ref.field.name, conv, aff)
            )
            vis = Hop(rel, table, cid, "emailVisibility", conv_int, AFF_NUMERIC)
            rid = Hop(rel, table, cid, "id", conv_text, AFF_TEXT)
        conds: tuple[Bool, ...] = ()
        if ref.email and self.hide_email:
            conds = (self.visible(vis, rid, ref.target),)
        return self.shape(ref.field, value, ref.modifier, ref.path, source, conds)

    def visible(self, vis: Value, rid: Value, coll: CatalogCollection) -> Bool:
        """``emailVisibility`` is true, or the row is the requester's own record."""
        shown: Bool = Cmp("=", vis, Lit(1, bound=False))
        auth = self.ctx.auth
        if auth is None:
            return shown
        own, cid = auth.get("id"), auth.get("collectionId")
        if not isinstance(own, str) or not own or (cid is not None and cid != coll.id):
            return shown
        return Join(False, (shown, Cmp("=", rid, Lit(own))))

    @staticmethod
    def shape(
        f: CatalogField,
        value: Value,
        modifier: str,
        path: tuple[str, ...],
        source: Source | None,
        conds: tuple[Bool, ...],
    ) -> Lowered:
        if f.type in ("json", "geoPoint"):
            if modifier == "length":
                return Lowered(JsonLength(value), source, False, conds)
            node: Value = JsonExtract(value, path)
            return Lowered(Lower(node) if modifier == "lower" else node, source, True, conds)
        if modifier == "length":
            return Lowered(ArrayLength(value), source, False, conds)
        if modifier == "each":
            each = EachSource(value)
            return Lowered(ItemValue(each), each, False, conds)
        return Lowered(Lower(value) if modifier == "lower" else value, source, False, conds)

    def request(self, ref: RequestRef) -> Lowered:
        ctx = self.ctx
        found, raw = True, t.cast(object, None)
        if ref.section == "method":
            raw = ctx.method
        elif ref.section == "context":
            raw = ctx.context
        elif ref.section == "auth":
            if ctx.auth is None:
                return Lowered(Lit(None, bound=False))
            found, raw = _extract(ctx.auth, ref.path)
        else:
            root = {"body": ctx.body, "headers": ctx.headers, "query": ctx.query}[ref.section]
            found, raw = _extract(root, ref.path)
        if ref.modifier == "isset":
            return Lowered(Lit(int(found), bound=False))
        if ref.modifier in ("length", "each"):
            items = [] if raw is None else list(raw) if isinstance(raw, (list, tuple)) else [raw]
            if ref.modifier == "length":
                return Lowered(Lit(len(items), bound=False))
            each = EachSource(Lit(json_text_lenient([_static_json(i) for i in items])))
            return Lowered(ItemValue(each), each)
        if ref.modifier == "lower" and ref.body_field is not None:
            text = go_string(raw)
            return Lowered(Lower(Lit(text, like=text)))
        value, like = _static(raw, ref.number)
        if value is None:
            return Lowered(Lit(None, bound=False))
        lit = Lit(value, like=like)
        return Lowered(Lower(lit) if ref.modifier == "lower" else lit)

    def macro(self, name: str) -> Lit:
        if name == "@now" and self.ctx.now is not None:
            return Lit(self.ctx.now, like=self.ctx.now)
        if self._now is None:
            self._now = datetime.now(UTC) if self.ctx.now is None else _parse_now(self.ctx.now)
        d = self._now
        ints = {
            "@second": d.second,
            "@minute": d.minute,
            "@hour": d.hour,
            "@day": d.day,
            "@month": d.month,
            "@weekday": (d.weekday() + 1) % 7,
            "@year": d.year,
        }
        if name in ints:
            return Lit(ints[name], like=str(ints[name]))
        start = d.replace(hour=0, minute=0, second=0, microsecond=0)
        end = d.replace(hour=23, minute=59, second=59, microsecond=999000)
        dates = {
            "@now": d,
            "@yesterday": d - timedelta(days=1),
            "@tomorrow": d + timedelta(days=1),
            "@todayStart": start,
            "@todayEnd": end,
            "@monthStart": start.replace(day=1),
            "@monthEnd": _month_end(end),
            "@yearStart": start.replace(month=1, day=1),
            "@yearEnd": end.replace(month=12, day=31),
        }
        text = _datetime_text(dates[name])
        return Lit(text, like=text)


def _static_json(v: object) -> object:
    """A request value as Go decodes it: JSON numbers are float64."""
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def _static(raw: object, number: bool) -> tuple[SqlValue, str]:
    """PocketBase's ``resolveStaticRequestField``: the bound value and its LIKE text."""
    if raw is None:
        return None, ""
    if isinstance(raw, bool):
        return int(raw), go_string(raw)
    if isinstance(raw, (int, float)):
        f = float(raw)
        return (None, "") if math.isnan(f) else (f, go_float(f))
    if isinstance(raw, str):
        if number and _DECIMAL_TEXT.fullmatch(raw):
            f = float(raw)
            if not math.isinf(f):
                return f, go_float(f)
        return raw, raw
    if isinstance(raw, (list, tuple, dict)):
        text = json_text_lenient(raw)
        return text, text
    return str(raw), str(raw)
