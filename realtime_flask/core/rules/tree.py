"""Access rules and list filters: PocketBase's filter language, parsed once, run two ways.

Rules of this module:

1. Pure.  Only the stdlib, ``realtime_flask.errors`` and ``realtime_flask.core.schema``
   are imported: no sqlite3, Flask, gevent or redis.  The one clock read is the
   date macros (``@now``...) when ``RequestContext.now`` is None.
2. Parse and resolve once.  :func:`compile_rule` parses the source and resolves
   every identifier against the collection.  Unknown fields, bad modifiers and
   (in client filters) hidden fields fail there, with :class:`RuleResolveError`.
3. One meaning, two printers.  Per request the compiled rule is *lowered* into a
   small SQL expression tree (comparisons, ``LIKE``, ``COALESCE``, ``LOWER``,
   ``json_extract``, ``EXISTS`` over ``json_each``).  :meth:`CompiledRule.to_sql`
   prints that tree; :meth:`CompiledRule.matches` evaluates the same tree with
   SQLite's own rules (type affinity, NULL and three-valued logic, BINARY
   collation, ASCII-only ``LIKE``/``LOWER``).  The backends agree by
   construction, and ``tests/unit/core/test_rules.py`` checks it on data.
4. Values never go into SQL text: ``?`` placeholders only, identifiers in
   double quotes.
5. Errors carry PocketBase's generic 400 text in ``.message`` (the API sends it
   as is) and the reason in ``str(exc)`` / ``.detail``.

Storage contract (both backends assume it; the store must follow it):

- one table per collection, named after it, one column per field, declared
  with :func:`column_type`: ``REAL`` for number, ``INTEGER`` for bool, ``TEXT``
  for everything else (json and multi-valued fields too: a ``JSON`` declared
  type has NUMERIC affinity and would store ``5.0`` as ``5``);
- bool as 0/1; json, multi select and multi relation as :func:`json_text`
  (a multi field's None as ``[]``); any other None as SQL NULL (text columns
  may hold NULL or ``''``: rules treat both alike).
- ``matches`` gets the same record as Python values (text str, number float,
  bool bool, json any JSON value, multi list[str], single relation str), and a
  ``RelationLookup`` returning related records in that form.

Semantics (PocketBase 0.40.6: PROTOCOL-REST.md section 7, ``tools/search/filter.go``,
``core/record_field_resolver*.go``):

- ``&&`` binds tighter than ``||``; parentheses group.
- ``=``/``!=`` follow PocketBase's ``resolveEqualExpr``: NULL and ``''`` are
  equal; ``!=`` is ``IS NOT`` (true against NULL); json values use ``IS``.
- Comparisons use SQLite affinity: a number column against a numeric-looking
  string compares numbers (``views = '5'``); a text column against a number
  compares text (``title = 5`` matches ``'5.0'``, a REAL printed by SQLite).
  ``true``/``false`` are 1/0, ``null`` is NULL.
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
- Client filters (``client_filter=True``) reject hidden fields, and a
  comparison on an auth collection's ``email`` only holds where
  ``emailVisibility`` is true or the row is the requester's own record
  (superusers, ``RequestContext.superuser``, skip this).

Deliberate divergences from PocketBase -- don't "fix" them without reading why:

- Strings: ``\\\\`` is an escape for one backslash (PocketBase keeps both
  characters and cannot end a string with a backslash).  The JS SDK's
  ``pb.filter()`` emits ``JSON.stringify`` strings, which need it.
- The grammar is strict: fexpr silently drops a half-written term before a
  parenthesis (``a (b = 1)``) or joins adjacent groups; we raise.
- Each comparison is evaluated on its own.  PocketBase joins a multi relation
  once for the whole filter, so ``editors.name ?= 'a' && editors.name ?= 'b'``
  needs a single editor named both; here it means what it says.
- Supported identifiers are a subset: one relation hop (no ``_via_`` back
  relations, no hops after ``@request.auth``/``@request.body``), no
  ``@collection.*``, no functions, no ``:changed``.  They fail at compile time.
- Hopping into a collection does not apply that collection's list rule (PocketBase
  ANDs it into client filters); the caller must decide whether to allow hops.
- ``@request.auth.<f>`` always reads the context's auth record; PocketBase
  joins the auth table for fields other than id/collectionId/collectionName/
  email/emailVisibility/verified.
- A hidden email also matches the requester's own record (PocketBase checks
  ``emailVisibility`` only).  ``collectionId``/``collectionName`` are usable as
  constants, ``json:length`` counts array items (PocketBase ignores the
  modifier there), and a modifier PocketBase would silently ignore
  (``title:isset``) is an error.

Known limit of the agreement: a *stored* REAL turned into text (``views ~ '5'``,
``views:lower``, a number field against a text field) is printed with a
correctly rounded ``%!.15g``; SQLite before 3.43 prints some values that need
16+ significant digits differently in the last digit (and parses some long
decimal texts one ulp off).  Constants are converted in Python before binding,
so they are not affected.
"""

from __future__ import annotations

import abc
import json
import math
import re
import string
import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import product

from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Field
from realtime_flask.core.schema import Schema
from realtime_flask.errors import GENERIC_400
from realtime_flask.errors import RealtimeError

__all__ = [
    "GUEST",
    "MAX_EXPRESSIONS",
    "MAX_FILTER_LENGTH",
    "OPERATORS",
    "And",
    "CompiledRule",
    "Comparison",
    "Expr",
    "Identifier",
    "Number",
    "Operand",
    "Or",
    "RelationLookup",
    "RequestContext",
    "RuleError",
    "RuleResolveError",
    "RuleSyntaxError",
    "SqlValue",
    "Text",
    "column_type",
    "compile_rule",
    "json_text",
    "parse",
]

#: The sixteen comparison operators of the grammar.
OPERATORS: t.Final[frozenset[str]] = frozenset(
    {"=", "!=", ">", ">=", "<", "<=", "~", "!~"}
    | {"?=", "?!=", "?>", "?>=", "?<", "?<=", "?~", "?!~"}
)
#: PocketBase's ``DefaultFilterExprLimit``: comparisons per rule or filter.
MAX_EXPRESSIONS: t.Final = 200
#: PocketBase's ``MaxFilterLength``, for client filters.
MAX_FILTER_LENGTH: t.Final = 3500
#: Parentheses deeper than this are refused (keeps every recursion shallow).
MAX_DEPTH: t.Final = 64

#: A value as SQLite holds it: NULL, INTEGER, REAL or TEXT.
SqlValue: t.TypeAlias = int | float | str | None


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class RuleError(RealtimeError, ValueError):
    """A rule or filter cannot be used.

    ``message`` is PocketBase's generic 400 text (what the API answers);
    ``detail`` and ``str(exc)`` say what is wrong.
    """

    status_hint = 400
    default_message = GENERIC_400
    detail: str

    def __init__(self, detail: str = "") -> None:
        super().__init__()
        self.detail = detail or self.message

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class RuleSyntaxError(RuleError):
    """The source does not parse; ``position`` is the 0-based character offset."""

    position: int

    def __init__(self, detail: str, position: int) -> None:
        super().__init__(detail)
        self.position = position

    def __str__(self) -> str:
        return f"syntax error at {self.position}: {self.detail}"


class RuleResolveError(RuleError):
    """An identifier cannot be resolved: unknown or hidden field, bad modifier, ..."""


# ---------------------------------------------------------------------------
# Syntax tree
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identifier:
    """A name: a field path, ``@request.*``, ``@now``, or ``null``/``true``/``false``.

    The ``:modifier`` suffix stays part of ``name``; :func:`compile_rule` splits it.
    """

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Text:
    """A quoted string, escapes already applied."""

    value: str
    position: int


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal (always a float, as PocketBase binds float64)."""

    value: float
    literal: str
    position: int


Operand: t.TypeAlias = Identifier | Text | Number


@dataclass(frozen=True, slots=True)
class Comparison:
    """``left op right``; ``position`` is where ``left`` starts."""

    left: Operand
    op: str
    right: Operand
    position: int


@dataclass(frozen=True, slots=True)
class And:
    """Terms joined by ``&&`` (two or more)."""

    terms: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Terms joined by ``||`` (two or more)."""

    terms: tuple[Expr, ...]


Expr: t.TypeAlias = Comparison | And | Or


# ---------------------------------------------------------------------------
# Tokenizer and parser (lexical rules of ganigeorgiev/fexpr)
# ---------------------------------------------------------------------------

_LETTERS = frozenset(string.ascii_letters)
_DIGITS = frozenset(string.digits)
_IDENT_START = _LETTERS | frozenset("@_#")
_IDENT_CHARS = _LETTERS | _DIGITS | frozenset("_.:")
_WHITESPACE = frozenset(" \t\n")
_SIGN_CHARS = frozenset("=?!><~")
_JOIN_CHARS = frozenset("&|")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "ident" "number" "text" "sign" "join" "(" ")" "eof"
    value: str
    pos: int


def _tokenize(src: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in _WHITESPACE:
            i += 1
        elif c == "/":
            if not src.startswith("//", i):
                raise RuleSyntaxError("invalid comment (expected '//')", i)
            end = src.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "()":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c in _IDENT_START:
            j = i + 1
            while j < n and src[j] in _IDENT_CHARS:
                j += 1
            word = src[i:j]
            if j < n and src[j] == "(":
                raise RuleSyntaxError(f"function calls are not supported ({word!r})", i)
            if word[-1] in ".:" or word in ("@", "_", "#"):
                raise RuleSyntaxError(f"invalid identifier {word!r}", i)
            tokens.append(_Token("ident", word, i))
            i = j
        elif c == "-" or c in _DIGITS:
            j, had_dot = i + 1, False
            while j < n and (src[j] in _DIGITS or (src[j] == "." and not had_dot)):
                had_dot = had_dot or src[j] == "."
                j += 1
            literal = src[i:j]
            if literal == "-" or literal.endswith("."):
                raise RuleSyntaxError(f"invalid number {literal!r}", i)
            tokens.append(_Token("number", literal, i))
            i = j
        elif c in "'\"":
            value, i2 = _scan_text(src, i)
            tokens.append(_Token("text", value, i))
            i = i2
        elif c in _SIGN_CHARS or c in _JOIN_CHARS:
            chars = _SIGN_CHARS if c in _SIGN_CHARS else _JOIN_CHARS
            j = i + 1
            while j < n and src[j] in chars:
                j += 1
            word = src[i:j]
            if chars is _SIGN_CHARS and word not in OPERATORS:
                raise RuleSyntaxError(f"invalid operator {word!r}", i)
            if chars is _JOIN_CHARS and word not in ("&&", "||"):
                raise RuleSyntaxError(f"invalid join operator {word!r} (use && or ||)", i)
            tokens.append(_Token("sign" if chars is _SIGN_CHARS else "join", word, i))
            i = j
        else:
            raise RuleSyntaxError(f"unexpected character {c!r}", i)
    tokens.append(_Token("eof", "", n))
    return tokens


def _scan_text(src: str, start: int) -> tuple[str, int]:
    """A quoted string from ``start``: ``\\<quote>`` and ``\\\\`` are escapes."""
    quote = src[start]
    out: list[str] = []
    i, n = start + 1, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in (quote, "\\"):
            out.append(src[i + 1])
            i += 2
        elif c == quote:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise RuleSyntaxError("unclosed quote", start)


def _number_value(literal: str) -> float:
    value = float(literal)
    # PocketBase's cast.ToFloat64 yields 0 when ParseFloat overflows.
    return 0.0 if math.isinf(value) else value


class _Parser:
    def __init__(self, src: str) -> None:
        self.tokens = _tokenize(src)
        self.i = 0
        self.depth = 0
        self.count = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Expr:
        if self.peek().kind == "eof":
            raise RuleSyntaxError("empty expression", 0)
        expr = self.or_expr()
        tok = self.peek()
        if tok.kind == ")":
            raise RuleSyntaxError("unexpected ')'", tok.pos)
        if tok.kind != "eof":
            raise RuleSyntaxError("expected '&&' or '||'", tok.pos)
        return expr

    def or_expr(self) -> Expr:
        terms = [self.and_expr()]
        while self.peek().kind == "join" and self.peek().value == "||":
            self.take()
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def and_expr(self) -> Expr:
        terms = [self.term()]
        while self.peek().kind == "join" and self.peek().value == "&&":
            self.take()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def term(self) -> Expr:
        tok = self.peek()
        if tok.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise RuleSyntaxError(f"too deeply nested (max {MAX_DEPTH})", tok.pos)
            self.take()
            expr = self.or_expr()
            close = self.peek()
            if close.kind == "eof":
                raise RuleSyntaxError("unclosed parenthesis", tok.pos)
            if close.kind != ")":
                raise RuleSyntaxError("expected '&&', '||' or ')'", close.pos)
            self.take()
            self.depth -= 1
            return expr
        left = self.operand()
        sign = self.peek()
        if sign.kind != "sign":
            raise RuleSyntaxError("expected operator", sign.pos)
        self.take()
        right = self.operand()
        self.count += 1
        if self.count > MAX_EXPRESSIONS:
            raise RuleSyntaxError(f"too many expressions (max {MAX_EXPRESSIONS})", left.position)
        return Comparison(left, sign.value, right, left.position)

    def operand(self) -> Operand:
        tok = self.take()
        if tok.kind == "ident":
            return Identifier(tok.value, tok.pos)
        if tok.kind == "text":
            return Text(tok.value, tok.pos)
        if tok.kind == "number":
            return Number(_number_value(tok.value), tok.value, tok.pos)
        raise RuleSyntaxError("expected operand", tok.pos)


def parse(source: str) -> Expr:
    """Parse a filter or rule into its syntax tree.

    :raises RuleSyntaxError: the source does not parse (the empty string included:
        :func:`compile_rule` treats ``""`` as "everyone" before parsing).
    """
    return _Parser(source).parse()


# ---------------------------------------------------------------------------
# Request context
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What ``@request.*`` and ``@now`` see.

    ``auth`` is the requester's auth record (stored values plus ``id``,
    ``collectionId``, ``collectionName``), None for guests.  ``headers`` names are
    snake_cased lower-case (``X-Flag`` -> ``x_flag``).  ``now`` is UTC text
    ``YYYY-MM-DD HH:MM:SS.mmmZ``; None means the current time.
    """

    auth: Mapping[str, object] | None
    body: Mapping[str, object] = dc_field(default_factory=dict)
    headers: Mapping[str, str] = dc_field(default_factory=dict)
    query: Mapping[str, str] = dc_field(default_factory=dict)
    method: str = "GET"
    context: str = "default"
    now: str | None = None
    superuser: bool = False


#: The context of an anonymous request.
GUEST: t.Final = RequestContext(auth=None)

#: ``(collection_id, record_ids) -> stored records``, injected by the store.
RelationLookup: t.TypeAlias = Callable[[str, Sequence[str]], Sequence[Mapping[str, object]]]


# ---------------------------------------------------------------------------
# SQLite value semantics
# ---------------------------------------------------------------------------

# Column affinities, ordered like SQLite's SQLITE_AFF_* (NONE < BLOB < TEXT < NUMERIC).
_NONE, _BLOB, _TEXT, _NUMERIC = 0, 1, 2, 3
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NUMERIC_TEXT = re.compile(
    r"[ \t\n\v\f\r]*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[ \t\n\v\f\r]*"
)
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def json_text(value: object) -> str:
    """The JSON text stored for json, multi select and multi relation fields.

    Compact, ASCII-escaped (``json.dumps(value, separators=(",", ":"))``).  The
    in-memory backend re-creates the stored text with it, so the store must
    write exactly this.
    """
    return json.dumps(value, separators=(",", ":"))


def _json_text_lenient(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def column_type(field: Field) -> str:
    """The declared SQLite column type this module assumes for ``field``."""
    if field.type == "number":
        return "REAL"
    if field.type == "bool":
        return "INTEGER"
    return "TEXT"


def _real_text(x: float) -> str:
    """A REAL as SQLite prints it (``%!.15g``): ``5.0``, ``1.0e+20``, ``Inf``."""
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0.0"
    mantissa, e, exponent = format(x, ".15g").partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def _to_text(v: int | float | str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    return _real_text(v)


def _go_float(x: float) -> str:
    """Go's ``strconv.FormatFloat(x, 'f', -1, 64)``: ``5``, ``0.1``, ``-0``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return format(Decimal(repr(x)).normalize(), "f")


def _go_string(v: object) -> str:
    """Go's ``cast.ToString`` for the values a request can carry."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple, dict)):
        return ""
    return str(v)


def _as_numeric(s: str) -> int | float | str:
    """SQLite's NUMERIC affinity applied to text: a number if it looks like one."""
    m = _NUMERIC_TEXT.fullmatch(s)
    if m is None:
        return s
    body = m.group(1)
    # (a long digit string is beyond int64 anyway, and int() refuses > 4300 digits)
    if len(body) <= 20 and "." not in body and "e" not in body and "E" not in body:
        i = int(body)
        if _INT64_MIN <= i <= _INT64_MAX:
            return i
    return float(body)


def _to_int64(i: int) -> int | float:
    return i if _INT64_MIN <= i <= _INT64_MAX else float(i)


def _conv_text(v: object) -> SqlValue:
    """A Python value as a TEXT-affinity column stores it."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return None if math.isnan(v) else _real_text(v)
    if isinstance(v, (list, tuple, dict)):
        return _json_text_lenient(v)
    return str(v)


def _conv_real(v: object) -> SqlValue:
    """A Python value as a REAL-affinity column stores it."""
    if v is None:
        return None
    if isinstance(v, (bool, int, float)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, str):
        n = _as_numeric(v)
        return n if isinstance(n, str) else float(n)
    return _conv_text(v)


def _conv_int(v: object) -> SqlValue:
    """A Python value as an INTEGER-affinity column stores it."""
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return _to_int64(v)
    if isinstance(v, str):
        n: SqlValue = _as_numeric(v)
    elif isinstance(v, float):
        n = v
    else:
        return _conv_text(v)
    if isinstance(n, float):
        if math.isnan(n):
            return None
        if n.is_integer() and _INT64_MIN <= n <= _INT64_MAX:
            return int(n)
    return n


def _conv_json(v: object) -> SqlValue:
    return None if v is None else _json_text_lenient(v)


def _conv_multi(v: object) -> SqlValue:
    return _json_text_lenient([] if v is None else v)


_Conv: t.TypeAlias = Callable[[object], SqlValue]


def _field_conv(f: Field) -> tuple[_Conv, int]:
    """How ``f``'s Python value is stored, and the column's affinity."""
    if f.type == "number":
        return _conv_real, _NUMERIC
    if f.type == "bool":
        return _conv_int, _NUMERIC
    if f.type == "json":
        return _conv_json, _TEXT
    if f.multiple:
        return _conv_multi, _TEXT
    return _conv_text, _TEXT


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def _json_parse(v: SqlValue) -> tuple[bool, object]:
    """``json_valid`` and the parsed value (SQLite rejects NaN/Infinity)."""
    if v is None:
        return False, None
    try:
        return True, json.loads(_to_text(v), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def _json_sql(e: object) -> SqlValue:
    """A parsed JSON value as ``json_extract``/``json_each`` return it."""
    if e is None or isinstance(e, str):
        return e
    if isinstance(e, bool):
        return int(e)
    if isinstance(e, int):
        return _to_int64(e)
    if isinstance(e, float):
        return e
    return json_text(e)


def _json_array(v: SqlValue) -> list[SqlValue] | None:
    """The items when ``v`` is JSON array text, else None."""
    ok, parsed = _json_parse(v)
    if ok and isinstance(parsed, list):
        return [_json_sql(e) for e in parsed]
    return None


def _compare_affinity(a: int, b: int) -> int:
    """SQLite's ``sqlite3CompareAffinity``: which conversion a comparison applies."""
    if a > _NONE and b > _NONE:
        return _NUMERIC if _NUMERIC in (a, b) else _BLOB
    return a if a > _NONE else b


def _order(x: int | float | str, y: int | float | str) -> int:
    """SQLite ordering of two non-NULL values: numbers < text, text by code point."""
    xs, ys = isinstance(x, str), isinstance(y, str)
    if xs != ys:
        return 1 if xs else -1
    return (x > y) - (x < y)  # type: ignore[operator]


def _compare(op: str, x: SqlValue, ax: int, y: SqlValue, ay: int) -> bool | None:
    aff = _compare_affinity(ax, ay)
    if aff == _NUMERIC:
        if isinstance(x, str):
            x = _as_numeric(x)
        if isinstance(y, str):
            y = _as_numeric(y)
    elif aff == _TEXT and (isinstance(x, str) or isinstance(y, str)):
        if x is not None:
            x = _to_text(x)
        if y is not None:
            y = _to_text(y)
    if op in ("IS", "IS NOT"):
        same = x is None and y is None
        if x is not None and y is not None:
            same = _order(x, y) == 0
        return same if op == "IS" else not same
    if x is None or y is None:
        return None
    c = _order(x, y)
    if op == "=":
        return c == 0
    if op == "<":
        return c < 0
    if op == "<=":
        return c <= 0
    if op == ">":
        return c > 0
    return c >= 0  # ">="


def _fold(c: str) -> str:
    return c.translate(_ASCII_LOWER)


@lru_cache(maxsize=1024)
def _like_tokens(pattern: str) -> tuple[str, ...] | None:
    """``%`` / ``_`` / ``=c`` (folded literal); None if the pattern ends in a lone escape."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            out.append("=" + _fold(pattern[i + 1]))
            i += 2
            continue
        if c == "%":
            if not out or out[-1] != "%":
                out.append("%")
        elif c == "_":
            out.append("_")
        else:
            out.append("=" + _fold(c))
        i += 1
    return tuple(out)


def _like(text: str, pattern: str) -> bool:
    """SQLite ``text LIKE pattern ESCAPE '\\'``, in O(len(text) * len(pattern))."""
    # SQLite's LIKE reads both values as C strings: they end at the first NUL.
    text = text.split("\x00", 1)[0]
    pattern = pattern.split("\x00", 1)[0]
    tokens = _like_tokens(pattern)
    if tokens is None:
        return False
    ti = pi = 0
    star, star_ti = -1, 0
    n, m = len(text), len(tokens)
    while ti < n:
        if pi < m:
            tok = tokens[pi]
            if tok == "%":
                star, star_ti = pi, ti
                pi += 1
                continue
            if tok == "_" or tok[1] == _fold(text[ti]):
                ti += 1
                pi += 1
                continue
        if star < 0:
            return False
        pi = star + 1
        star_ti += 1
        ti = star_ti
    while pi < m and tokens[pi] == "%":
        pi += 1
    return pi == m


def _contains_unescaped(s: str, ch: str) -> bool:
    prev = ""
    for c in s:
        if c == ch and prev != "\\":
            return True
        prev = "" if c == "\\" and prev == "\\" else c
    return False


def _escape_unescaped(s: str) -> str:
    """PocketBase's ``escapeUnescapedChars(s, '\\\\', '%', '_')``, same quirks."""
    out: list[str] = []
    match = False
    for i in range(len(s) - 1, -1, -1):
        c = s[i]
        if match:
            if c != "\\":
                out.append("\\")
            match = False
        else:
            match = c in "\\%_"
        out.append(c)
        if i == 0 and match:
            out.append("\\")
    return "".join(reversed(out))


def _wrap_like(value: str) -> str:
    """PocketBase's ``wrapLikeParams``: ``%v%`` unless ``v`` has an unescaped ``%``."""
    if _contains_unescaped(value, "%"):
        return value
    return "%" + _escape_unescaped(value) + "%"


# ---------------------------------------------------------------------------
# The lowered SQL tree: printed by to_sql, evaluated by matches
# ---------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Renderer:
    def __init__(self, table: str) -> None:
        self.base = _quote(table)
        self.params: list[object] = []
        self.bound: dict[int, str] = {}
        self._n = 0

    def param(self, value: object) -> str:
        self.params.append(value)
        return "?"

    def alias(self, kind: str) -> str:
        self._n += 1
        return _quote(f"__rule_{kind}{self._n}")


class _Env:
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


class _Value(abc.ABC):
    """A value expression: ``sql`` prints it, ``ev`` computes it for one row."""

    __slots__ = ()
    aff: int

    @abc.abstractmethod
    def sql(self, r: _Renderer) -> str: ...

    @abc.abstractmethod
    def ev(self, env: _Env) -> SqlValue: ...


class _Bool(abc.ABC):
    """A condition; ``ev`` is three-valued (None = SQL NULL)."""

    __slots__ = ()

    @abc.abstractmethod
    def sql(self, r: _Renderer) -> str: ...

    @abc.abstractmethod
    def ev(self, env: _Env) -> bool | None: ...


class _Source(abc.ABC):
    """The items of a multi-valued operand: a FROM clause, or a Python list."""

    __slots__ = ()

    @abc.abstractmethod
    def from_sql(self, r: _Renderer) -> str: ...

    @abc.abstractmethod
    def items(self, env: _Env) -> list[object]: ...


@dataclass(frozen=True, slots=True, eq=False)
class _Lit(_Value):
    """A constant: bound as ``?``, or printed (NULL, 1/0, ``''``, small ints)."""

    value: SqlValue
    bound: bool = True
    like: str = ""
    aff: int = _NONE

    def sql(self, r: _Renderer) -> str:
        if self.bound:
            return r.param(self.value)
        if self.value is None:
            return "NULL"
        if isinstance(self.value, str):
            return "'" + self.value.replace("'", "''") + "'"
        return str(self.value)

    def ev(self, env: _Env) -> SqlValue:
        return self.value


_EMPTY = _Lit("", bound=False)
_PERCENT = _Lit("%", bound=False)


@dataclass(frozen=True, slots=True, eq=False)
class _Col(_Value):
    """A column of the rule's own table."""

    column: str
    conv: _Conv
    aff: int

    def sql(self, r: _Renderer) -> str:
        return f"{r.base}.{_quote(self.column)}"

    def ev(self, env: _Env) -> SqlValue:
        return self.conv(env.record.get(self.column))


@dataclass(frozen=True, slots=True, eq=False)
class _Hop(_Value):
    """``rel.column`` through a single relation: a scalar subquery."""

    rel: _Col
    table: str
    collection_id: str
    column: str
    conv: _Conv
    aff: int

    def sql(self, r: _Renderer) -> str:
        a = r.alias("h")
        return (
            f"(SELECT {a}.{_quote(self.column)} FROM {_quote(self.table)} AS {a} "
            f'WHERE {a}."id" = {self.rel.sql(r)})'
        )

    def ev(self, env: _Env) -> SqlValue:
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
    arr = _json_array(v)
    return [v] if arr is None else arr


@dataclass(frozen=True, slots=True, eq=False)
class _EachSource(_Source):
    """The items of a select/relation column, or of a bound JSON array."""

    of: _Value

    def from_sql(self, r: _Renderer) -> str:
        o, j = r.alias("o"), r.alias("j")
        r.bound[id(self)] = j
        if isinstance(self.of, _Lit) and self.of.bound:
            each = f"json_each({self.of.sql(r)})"
        else:
            each = f"json_each({_array_or_self(self.of.sql(r))})"
        return f"(SELECT 1) AS {o} LEFT JOIN {each} AS {j}"

    def items(self, env: _Env) -> list[object]:
        values: list[object] = list(_items_of(self.of.ev(env)))
        return values or [None]


@dataclass(frozen=True, slots=True, eq=False)
class _HopSource(_Source):
    """The target records of a multi relation (None for a dangling id)."""

    rel: _Col
    table: str
    collection_id: str

    def from_sql(self, r: _Renderer) -> str:
        o, j, h = r.alias("o"), r.alias("j"), r.alias("t")
        r.bound[id(self)] = h
        return (
            f"(SELECT 1) AS {o} LEFT JOIN json_each({_array_or_self(self.rel.sql(r))}) AS {j} "
            f'LEFT JOIN {_quote(self.table)} AS {h} ON {h}."id" = {j}."value"'
        )

    def items(self, env: _Env) -> list[object]:
        ids = _items_of(self.rel.ev(env))
        found = env.fetch(self.collection_id, [i for i in ids if isinstance(i, str)])
        recs: list[object] = [found.get(i) if isinstance(i, str) else None for i in ids]
        return recs or [None]


@dataclass(frozen=True, slots=True, eq=False)
class _ItemValue(_Value):
    """The current item of an ``_EachSource`` (``json_each.value``: BLOB affinity)."""

    source: _EachSource
    aff: int = _BLOB

    def sql(self, r: _Renderer) -> str:
        return f'{r.bound[id(self.source)]}."value"'

    def ev(self, env: _Env) -> SqlValue:
        return t.cast(SqlValue, env.items[id(self.source)])


@dataclass(frozen=True, slots=True, eq=False)
class _ItemField(_Value):
    """A column of the current target record of a ``_HopSource``."""

    source: _HopSource
    column: str
    conv: _Conv
    aff: int

    def sql(self, r: _Renderer) -> str:
        return f"{r.bound[id(self.source)]}.{_quote(self.column)}"

    def ev(self, env: _Env) -> SqlValue:
        rec = t.cast("Mapping[str, object] | None", env.items[id(self.source)])
        return None if rec is None else self.conv(rec.get(self.column))


@dataclass(frozen=True, slots=True, eq=False)
class _Lower(_Value):
    x: _Value
    aff: int = _NONE

    def sql(self, r: _Renderer) -> str:
        return f"LOWER({self.x.sql(r)})"

    def ev(self, env: _Env) -> SqlValue:
        v = self.x.ev(env)
        return None if v is None else _to_text(v).translate(_ASCII_LOWER)


@dataclass(frozen=True, slots=True, eq=False)
class _Coalesce(_Value):
    x: _Value
    y: _Value
    aff: int = _NONE

    def sql(self, r: _Renderer) -> str:
        return f"COALESCE({self.x.sql(r)}, {self.y.sql(r)})"

    def ev(self, env: _Env) -> SqlValue:
        v = self.x.ev(env)
        return self.y.ev(env) if v is None else v


@dataclass(frozen=True, slots=True, eq=False)
class _Concat(_Value):
    parts: tuple[_Value, ...]
    aff: int = _NONE

    def sql(self, r: _Renderer) -> str:
        return "(" + " || ".join(p.sql(r) for p in self.parts) + ")"

    def ev(self, env: _Env) -> SqlValue:
        out: list[str] = []
        for p in self.parts:
            v = p.ev(env)
            if v is None:
                return None
            out.append(_to_text(v))
        return "".join(out)


@dataclass(frozen=True, slots=True, eq=False)
class _JsonExtract(_Value):
    """``json_extract(x, path)`` of valid JSON text, else NULL."""

    x: _Value
    path: tuple[str, ...]
    aff: int = _NONE

    def sql(self, r: _Renderer) -> str:
        x = self.x.sql(r)
        spec = "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in self.path)
        return (
            f"(CASE WHEN json_valid({x}) THEN json_extract({self.x.sql(r)}, {r.param(spec)}) END)"
        )

    def ev(self, env: _Env) -> SqlValue:
        ok, value = _json_parse(self.x.ev(env))
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
        return _json_sql(value)


@dataclass(frozen=True, slots=True, eq=False)
class _JsonLength(_Value):
    """Items of a JSON array; 0 for anything else."""

    x: _Value
    aff: int = _NONE

    def sql(self, r: _Renderer) -> str:
        x = self.x.sql(r)
        return (
            f"(CASE WHEN json_valid({x}) THEN (CASE WHEN json_type({x}) = 'array' "
            f"THEN json_array_length({x}) ELSE 0 END) ELSE 0 END)"
        )

    def ev(self, env: _Env) -> SqlValue:
        ok, value = _json_parse(self.x.ev(env))
        return len(value) if ok and isinstance(value, list) else 0


@dataclass(frozen=True, slots=True, eq=False)
class _ArrayLength(_Value):
    """PocketBase's ``JSONArrayLength``: array items, 0 for ''/NULL, else 1."""

    x: _Value
    aff: int = _NONE

    def sql(self, r: _Renderer) -> str:
        x = self.x.sql(r)
        return (
            f"(CASE WHEN (CASE WHEN json_valid({x}) THEN json_type({x}) = 'array' ELSE 0 END) "
            f"THEN json_array_length({x}) WHEN {x} IS NULL OR {x} = '' THEN 0 ELSE 1 END)"
        )

    def ev(self, env: _Env) -> SqlValue:
        v = self.x.ev(env)
        arr = _json_array(v)
        if arr is not None:
            return len(arr)
        return 0 if v is None or v == "" else 1


@dataclass(frozen=True, slots=True, eq=False)
class _Truth(_Bool):
    value: bool

    def sql(self, r: _Renderer) -> str:
        return "1" if self.value else "0"

    def ev(self, env: _Env) -> bool | None:
        return self.value


@dataclass(frozen=True, slots=True, eq=False)
class _Cmp(_Bool):
    op: str  # = < <= > >= IS, IS NOT
    a: _Value
    b: _Value

    def sql(self, r: _Renderer) -> str:
        return f"({self.a.sql(r)} {self.op} {self.b.sql(r)})"

    def ev(self, env: _Env) -> bool | None:
        return _compare(self.op, self.a.ev(env), self.a.aff, self.b.ev(env), self.b.aff)


@dataclass(frozen=True, slots=True, eq=False)
class _IsNull(_Bool):
    x: _Value
    negate: bool = False

    def sql(self, r: _Renderer) -> str:
        return f"({self.x.sql(r)} IS {'NOT ' if self.negate else ''}NULL)"

    def ev(self, env: _Env) -> bool | None:
        return (self.x.ev(env) is None) != self.negate


@dataclass(frozen=True, slots=True, eq=False)
class _LikeCond(_Bool):
    a: _Value
    b: _Value
    negate: bool

    def sql(self, r: _Renderer) -> str:
        op = "NOT LIKE" if self.negate else "LIKE"
        return f"({self.a.sql(r)} {op} {self.b.sql(r)} ESCAPE '\\')"

    def ev(self, env: _Env) -> bool | None:
        a, b = self.a.ev(env), self.b.ev(env)
        if a is None or b is None:
            return None
        return _like(_to_text(a), _to_text(b)) != self.negate


@dataclass(frozen=True, slots=True, eq=False)
class _Join(_Bool):
    conj: bool  # True: AND, False: OR
    items: tuple[_Bool, ...]

    def sql(self, r: _Renderer) -> str:
        return "(" + (" AND " if self.conj else " OR ").join(i.sql(r) for i in self.items) + ")"

    def ev(self, env: _Env) -> bool | None:
        unknown = False
        for item in self.items:
            v = item.ev(env)
            if v is None:
                unknown = True
            elif v is not self.conj:
                return v
        return None if unknown else self.conj


@dataclass(frozen=True, slots=True, eq=False)
class _Not(_Bool):
    x: _Bool

    def sql(self, r: _Renderer) -> str:
        return f"(NOT {self.x.sql(r)})"

    def ev(self, env: _Env) -> bool | None:
        v = self.x.ev(env)
        return None if v is None else not v


@dataclass(frozen=True, slots=True, eq=False)
class _Exists(_Bool):
    sources: tuple[_Source, ...]
    pred: _Bool

    def sql(self, r: _Renderer) -> str:
        froms = " CROSS JOIN ".join(s.from_sql(r) for s in self.sources)
        return f"EXISTS (SELECT 1 FROM {froms} WHERE {self.pred.sql(r)})"

    def ev(self, env: _Env) -> bool | None:
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


# ---------------------------------------------------------------------------
# Resolution (compile time)
# ---------------------------------------------------------------------------

_MODIFIERS = frozenset({"lower", "length", "each", "isset", "changed"})
_MULTI_TYPES = frozenset({"select", "relation"})
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
class _ConstRef:
    value: SqlValue
    bound: bool
    like: str
    lower: bool = False


@dataclass(frozen=True, slots=True)
class _FieldRef:
    field: Field
    modifier: str
    path: tuple[str, ...]
    email: bool  # client filter on an auth collection's email


@dataclass(frozen=True, slots=True)
class _HopRef:
    rel: Field
    target: Collection
    field: Field
    modifier: str
    path: tuple[str, ...]
    email: bool


@dataclass(frozen=True, slots=True)
class _RequestRef:
    section: str  # auth body headers query method context
    path: tuple[str, ...]
    modifier: str
    body_field: Field | None  # the collection field a one-segment body key names
    number: bool  # the last key names a number field: numeric strings become numbers


@dataclass(frozen=True, slots=True)
class _MacroRef:
    name: str


_Ref: t.TypeAlias = _ConstRef | _FieldRef | _HopRef | _RequestRef | _MacroRef


@dataclass(frozen=True, slots=True)
class _CCmp:
    op: str
    left: _Ref
    right: _Ref


@dataclass(frozen=True, slots=True)
class _CJoin:
    conj: bool
    items: tuple[_CExpr, ...]


_CExpr: t.TypeAlias = _CCmp | _CJoin


def _split_modifier(segment: str, name: str) -> tuple[str, str]:
    parts = segment.split(":")
    if len(parts) != 2:
        return segment, ""
    if parts[1] not in _MODIFIERS:
        raise RuleResolveError(f"unknown modifier {parts[1]!r} in {name!r}")
    return parts[0], parts[1]


class _Resolver:
    def __init__(self, collection: Collection, schema: Schema, client_filter: bool) -> None:
        self.collection = collection
        self.schema = schema
        self.client_filter = client_filter
        self.names: set[str] = set()
        self.needs_lookup = False
        self.email = False

    def expr(self, e: Expr) -> _CExpr:
        if isinstance(e, Comparison):
            return _CCmp(e.op, self.ref(e.left), self.ref(e.right))
        return _CJoin(isinstance(e, And), tuple(self.expr(x) for x in e.terms))

    def ref(self, op: Operand) -> _Ref:
        if isinstance(op, Text):
            return _ConstRef(op.value, True, op.value)
        if isinstance(op, Number):
            return _ConstRef(op.value, True, _go_float(op.value))
        name = op.name
        self.names.add(name)
        if name in _MACROS:
            return _MacroRef(name)
        if name.startswith("@"):
            return self.request(name)
        try:
            return self.field_path(name)
        except RuleResolveError:
            keyword = name.lower()
            if keyword == "null":
                return _ConstRef(None, False, "")
            if keyword in ("true", "false"):
                return _ConstRef(int(keyword == "true"), False, keyword)
            raise

    def field(self, coll: Collection, name: str, full: str) -> Field:
        f = coll.field(name)
        if f is None:
            where = "" if name == full else f" in {full!r}"
            raise RuleResolveError(f"unknown field {name!r}{where}")
        if f.hidden and self.client_filter:
            raise RuleResolveError(f"hidden field {name!r} cannot be filtered")
        return f

    def check_modifier(self, f: Field, modifier: str, name: str, *, hop: bool) -> None:
        if modifier in ("", "lower"):
            return
        if modifier == "length" and (f.type in _MULTI_TYPES or f.type == "json"):
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

    def is_email(self, coll: Collection, f: Field) -> bool:
        hit = self.client_filter and coll.is_auth and f.name == "email"
        self.email = self.email or hit
        return hit

    def field_path(self, name: str) -> _Ref:
        segments = name.split(".")
        coll = self.collection
        if len(segments) == 1:
            fname, modifier = _split_modifier(name, name)
            if fname in ("collectionId", "collectionName") and coll.field(fname) is None:
                if modifier not in ("", "lower"):
                    raise RuleResolveError(f"modifier ':{modifier}' is not supported in {name!r}")
                value = coll.id if fname == "collectionId" else coll.name
                return _ConstRef(value, True, value, lower=modifier == "lower")
            f = self.field(coll, fname, name)
            self.check_modifier(f, modifier, name, hop=False)
            return _FieldRef(f, modifier, (), self.is_email(coll, f))
        f = self.field(coll, segments[0], name)
        if f.type == "json":
            path, modifier = self.json_path(segments[1:], name)
            return _FieldRef(f, modifier, path, False)
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
            if tf.type != "json":
                raise RuleResolveError(
                    f"unknown relation path {name!r} (only one relation hop is supported)"
                )
            tpath, modifier = self.json_path(rest[1:], name)
        if f.multiple or tf.name != "id":
            self.needs_lookup = True
        return _HopRef(f, target, tf, modifier, tpath, self.is_email(target, tf))

    def request(self, name: str) -> _Ref:
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
            return _RequestRef(section, (), modifier, None, False)
        section = segments[1]
        if section not in ("auth", "body", "headers", "query"):
            raise RuleResolveError(f"unknown identifier {name!r}")
        last, modifier = _split_modifier(segments[-1], name)
        path = (*segments[2:-1], last)
        if any(not p for p in path):
            raise RuleResolveError(f"unknown identifier {name!r}")
        coll = self.collection
        body_field: Field | None = None
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
        return _RequestRef(section, path, modifier, body_field, number)


# ---------------------------------------------------------------------------
# Lowering (per request)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Lowered:
    node: _Value
    source: _Source | None = None
    disabled: bool = False  # PocketBase's NullFallbackDisabled (json): = becomes IS
    conds: tuple[_Bool, ...] = ()


def _param_of(node: _Value) -> _Lit | None:
    inner = node.x if isinstance(node, _Lower) else node
    return inner if isinstance(inner, _Lit) and inner.bound else None


def _is_empty(node: _Value) -> bool:
    if isinstance(node, _Lit) and not node.bound:
        return node.value is None
    p = _param_of(node)
    return p is not None and (p.value is None or p.value == "")


def _is_known(node: _Value) -> bool:
    if isinstance(node, _Lit) and not node.bound:
        return isinstance(node.value, int) and node.value in (0, 1)
    p = _param_of(node)
    return p is not None and p.value is not None and p.value != ""


def _preconvert(x: _Value, aff: int) -> _Value:
    if not isinstance(x, _Lit) or not x.bound:
        return x
    if aff == _NUMERIC and isinstance(x.value, str):
        n = _as_numeric(x.value)
        return x if isinstance(n, str) else _Lit(n, like=x.like)
    if aff == _TEXT and isinstance(x.value, (int, float)):
        return _Lit(_to_text(x.value), like=x.like)
    return x


def _cmp(op: str, a: _Value, b: _Value) -> _Cmp:
    """``a op b``, with bound constants already converted by the comparison's affinity.

    SQLite would convert them at run time, with the same result except in the
    last digit for some values (``sqlite3AtoF``/``%!.15g`` are not correctly
    rounded before SQLite 3.43).  Converting here makes both backends use
    Python's exact conversion.
    """
    aff = _compare_affinity(a.aff, b.aff)
    return _Cmp(op, _preconvert(a, aff), _preconvert(b, aff))


def _equal(a: _Lowered, b: _Lowered, eq: bool) -> _Bool:
    """PocketBase's ``resolveEqualExpr`` (= and !=, NULL equal to '')."""
    op = "=" if eq else "IS NOT"
    if a.disabled or b.disabled:
        return _cmp("IS" if eq else "IS NOT", a.node, b.node)
    ea, eb = _is_empty(a.node), _is_empty(b.node)
    if ea and eb:
        return _Truth(eq)
    if _is_known(a.node) or _is_known(b.node):
        return _cmp(op, _EMPTY if ea else a.node, _EMPTY if eb else b.node)
    if ea or eb:
        other = b.node if ea else a.node
        pair = (_EMPTY, other) if ea else (other, _EMPTY)
        return _Join(not eq, (_cmp(op, *pair), _IsNull(other, negate=not eq)))
    return _Cmp(op, _Coalesce(a.node, _EMPTY), _Coalesce(b.node, _EMPTY))


def _like_cond(a: _Lowered, b: _Lowered, negate: bool) -> _Bool:
    right = b.node
    lit = _param_of(right)
    if lit is not None:
        pattern = _Lit(_wrap_like(lit.like), like=_wrap_like(lit.like))
        right = pattern if right is lit else _Lower(pattern)
    else:
        right = _Concat((_PERCENT, right, _PERCENT))
    return _LikeCond(a.node, right, negate)


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


class _Lowering:
    def __init__(self, collection: Collection, ctx: RequestContext, client_filter: bool) -> None:
        self.collection = collection
        self.ctx = ctx
        self.hide_email = client_filter and not ctx.superuser
        self._now: datetime | None = None

    def expr(self, e: _CExpr) -> _Bool:
        if isinstance(e, _CCmp):
            return self.cmp(e)
        return _Join(e.conj, tuple(self.expr(x) for x in e.items))

    def cmp(self, c: _CCmp) -> _Bool:
        a, b = self.operand(c.left), self.operand(c.right)
        any_op = c.op.startswith("?")
        op = c.op[1:] if any_op else c.op
        pred: _Bool
        if op in ("=", "!="):
            pred = _equal(a, b, op == "=")
        elif op in ("~", "!~"):
            pred = _like_cond(a, b, op == "!~")
        else:
            pred = _cmp(op, a.node, b.node)
        if a.conds or b.conds:
            pred = _Join(True, (pred, *a.conds, *b.conds))
        sources = tuple(s for s in (a.source, b.source) if s is not None)
        if not sources:
            return pred
        found = _Exists(sources, pred)
        if any_op:
            return found
        return _Join(True, (found, _Not(_Exists(sources, _Not(pred)))))

    def operand(self, ref: _Ref) -> _Lowered:
        if isinstance(ref, _ConstRef):
            lit = _Lit(ref.value, ref.bound, ref.like)
            return _Lowered(_Lower(lit) if ref.lower else lit)
        if isinstance(ref, _MacroRef):
            return _Lowered(self.macro(ref.name))
        if isinstance(ref, _RequestRef):
            return self.request(ref)
        if isinstance(ref, _FieldRef):
            conv, aff = _field_conv(ref.field)
            col = _Col(ref.field.name, conv, aff)
            conds: tuple[_Bool, ...] = ()
            if ref.email and self.hide_email:
                vis = _Col("emailVisibility", _conv_int, _NUMERIC)
                conds = (self.visible(vis, _Col("id", _conv_text, _TEXT), self.collection),)
            return self.shape(ref.field, col, ref.modifier, ref.path, None, conds)
        return self.hop(ref)

    def hop(self, ref: _HopRef) -> _Lowered:
        rel = _Col(ref.rel.name, *_field_conv(ref.rel))
        conv, aff = _field_conv(ref.field)
        table, cid = ref.target.name, ref.target.id
        source: _Source | None = None
        value: _Value
        vis: _Value
        rid: _Value
        if ref.rel.multiple:
            hs = _HopSource(rel, table, cid)
            source = hs
            value = _ItemField(hs, ref.field.name, conv, aff)
            vis = _ItemField(hs, "emailVisibility", _conv_int, _NUMERIC)
            rid = _ItemField(hs, "id", _conv_text, _TEXT)
        else:
            value = (
                rel if ref.field.name == "id" else _Hop(rel, table, cid, ref.field.name, conv, aff)
            )
            vis = _Hop(rel, table, cid, "emailVisibility", _conv_int, _NUMERIC)
            rid = _Hop(rel, table, cid, "id", _conv_text, _TEXT)
        conds: tuple[_Bool, ...] = ()
        if ref.email and self.hide_email:
            conds = (self.visible(vis, rid, ref.target),)
        return self.shape(ref.field, value, ref.modifier, ref.path, source, conds)

    def visible(self, vis: _Value, rid: _Value, coll: Collection) -> _Bool:
        """``emailVisibility`` is true, or the row is the requester's own record."""
        shown: _Bool = _Cmp("=", vis, _Lit(1, bound=False))
        auth = self.ctx.auth
        if auth is None:
            return shown
        own, cid = auth.get("id"), auth.get("collectionId")
        if not isinstance(own, str) or not own or (cid is not None and cid != coll.id):
            return shown
        return _Join(False, (shown, _Cmp("=", rid, _Lit(own))))

    @staticmethod
    def shape(
        f: Field,
        value: _Value,
        modifier: str,
        path: tuple[str, ...],
        source: _Source | None,
        conds: tuple[_Bool, ...],
    ) -> _Lowered:
        if f.type == "json":
            if modifier == "length":
                return _Lowered(_JsonLength(value), source, False, conds)
            node: _Value = _JsonExtract(value, path)
            return _Lowered(_Lower(node) if modifier == "lower" else node, source, True, conds)
        if modifier == "length":
            return _Lowered(_ArrayLength(value), source, False, conds)
        if modifier == "each":
            each = _EachSource(value)
            return _Lowered(_ItemValue(each), each, False, conds)
        return _Lowered(_Lower(value) if modifier == "lower" else value, source, False, conds)

    def request(self, ref: _RequestRef) -> _Lowered:
        ctx = self.ctx
        found, raw = True, t.cast(object, None)
        if ref.section == "method":
            raw = ctx.method
        elif ref.section == "context":
            raw = ctx.context
        elif ref.section == "auth":
            if ctx.auth is None:
                return _Lowered(_Lit(None, bound=False))
            found, raw = _extract(ctx.auth, ref.path)
        else:
            root = {"body": ctx.body, "headers": ctx.headers, "query": ctx.query}[ref.section]
            found, raw = _extract(root, ref.path)
        if ref.modifier == "isset":
            return _Lowered(_Lit(int(found), bound=False))
        if ref.modifier in ("length", "each"):
            items = [] if raw is None else list(raw) if isinstance(raw, (list, tuple)) else [raw]
            if ref.modifier == "length":
                return _Lowered(_Lit(len(items), bound=False))
            each = _EachSource(_Lit(_json_text_lenient([_static_json(i) for i in items])))
            return _Lowered(_ItemValue(each), each)
        if ref.modifier == "lower" and ref.body_field is not None:
            text = _go_string(raw)
            return _Lowered(_Lower(_Lit(text, like=text)))
        value, like = _static(raw, ref.number)
        if value is None:
            return _Lowered(_Lit(None, bound=False))
        lit = _Lit(value, like=like)
        return _Lowered(_Lower(lit) if ref.modifier == "lower" else lit)

    def macro(self, name: str) -> _Lit:
        if name == "@now" and self.ctx.now is not None:
            return _Lit(self.ctx.now, like=self.ctx.now)
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
            return _Lit(ints[name], like=str(ints[name]))
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
        return _Lit(text, like=text)


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
        return int(raw), _go_string(raw)
    if isinstance(raw, (int, float)):
        f = float(raw)
        return (None, "") if math.isnan(f) else (f, _go_float(f))
    if isinstance(raw, str):
        if number and _DECIMAL_TEXT.fullmatch(raw):
            f = float(raw)
            if not math.isinf(f):
                return f, _go_float(f)
        return raw, raw
    if isinstance(raw, (list, tuple, dict)):
        text = _json_text_lenient(raw)
        return text, text
    return str(raw), str(raw)


# ---------------------------------------------------------------------------
# Compiled rules
# ---------------------------------------------------------------------------


class CompiledRule:
    """A rule or filter resolved against one collection; reusable and thread-safe.

    ``always`` is True for the empty rule ("everyone").
    """

    __slots__ = (
        "_collection",
        "_compiled",
        "_last",
        "_names",
        "always",
        "client_filter",
        "expr",
        "needs_lookup",
        "source",
    )

    def __init__(
        self,
        source: str,
        collection: Collection,
        expr: Expr | None,
        compiled: _CExpr | None,
        names: frozenset[str],
        *,
        client_filter: bool,
        needs_lookup: bool,
    ) -> None:
        self.source = source
        self.expr = expr
        self.always = compiled is None
        self.client_filter = client_filter
        #: True when :meth:`matches` follows a relation (it then needs a lookup).
        self.needs_lookup = needs_lookup
        self._collection = collection
        self._compiled = compiled
        self._names = names
        self._last: tuple[RequestContext, _Bool] | None = None

    def __repr__(self) -> str:
        return f"<CompiledRule {self._collection.name!r} {self.source!r}>"

    def references(self, prefix: str) -> bool:
        """Whether the rule's result can depend on identifiers starting with ``prefix``.

        ``references("@request.auth")`` is also True for client filters that
        compare an auth collection's ``email`` (its visibility depends on the
        requester).
        """
        return any(name.startswith(prefix) for name in self._names)

    def _lower(self, ctx: RequestContext) -> _Bool:
        last = self._last
        if last is not None and last[0] is ctx:
            return last[1]
        assert self._compiled is not None
        tree = _Lowering(self._collection, ctx, self.client_filter).expr(self._compiled)
        self._last = (ctx, tree)
        return tree

    def matches(
        self,
        record: Mapping[str, object],
        ctx: RequestContext,
        lookup: RelationLookup | None = None,
    ) -> bool:
        """Whether ``record`` (stored values) passes, as ``to_sql`` would select it.

        :param lookup: fetches related records; required when ``needs_lookup``.
        """
        if self._compiled is None:
            return True
        if self.needs_lookup and lookup is None:
            raise TypeError(f"{self!r} follows a relation: matches() needs a RelationLookup")
        return self._lower(ctx).ev(_Env(record, lookup)) is True

    def to_sql(self, table: str, ctx: RequestContext) -> tuple[str, list[object]]:
        """An SQLite boolean expression over ``table`` and its ``?`` parameters."""
        if self._compiled is None:
            return "1", []
        r = _Renderer(table)
        return self._lower(ctx).sql(r), r.params


def compile_rule(
    source: str,
    collection: Collection,
    schema: Schema,
    *,
    client_filter: bool = False,
) -> CompiledRule:
    """Parse ``source`` and resolve it against ``collection``.

    ``""`` is the "everyone" rule (never parsed).  ``client_filter=True`` is a
    user-supplied ``filter``: hidden fields are refused and hidden emails do not
    match (see the module docstring).

    :raises RuleSyntaxError: the source does not parse.
    :raises RuleResolveError: an identifier cannot be resolved.
    """
    if source == "":
        return CompiledRule(
            source,
            collection,
            None,
            None,
            frozenset(),
            client_filter=client_filter,
            needs_lookup=False,
        )
    if client_filter and len(source) > MAX_FILTER_LENGTH:
        raise RuleSyntaxError(f"filter too long (max {MAX_FILTER_LENGTH})", MAX_FILTER_LENGTH)
    expr = parse(source)
    resolver = _Resolver(collection, schema, client_filter)
    compiled = resolver.expr(expr)
    names = set(resolver.names)
    if resolver.email:
        names.add("@request.auth")
    return CompiledRule(
        source,
        collection,
        expr,
        compiled,
        frozenset(names),
        client_filter=client_filter,
        needs_lookup=resolver.needs_lookup,
    )
