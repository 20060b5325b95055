"""SQLite's value semantics in Python: storage, affinity, comparison, ``LIKE``, JSON.

What the in-Python evaluation needs to compute what SQLite would: every
function here mirrors one SQLite (or PocketBase/Go) behaviour, named in its
docstring.  A value is a :data:`SqlValue` (NULL, INTEGER, REAL or TEXT);
affinities are the ``AFF_*`` ints, ordered like SQLite's ``SQLITE_AFF_*``.

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

Comparisons follow SQLite affinity: a number column against a numeric-looking
string compares numbers (``views = '5'``); a text column against a number
compares text (``title = 5`` matches ``'5.0'``, a REAL printed by SQLite).
Numbers order before text, text by code point (BINARY collation).  ``LIKE``
and ``LOWER`` fold ASCII only.

Known limit of the agreement: a *stored* REAL turned into text (``views ~ '5'``,
``views:lower``, a number field against a text field) is printed with a
correctly rounded ``%!.15g``; SQLite before 3.43 prints some values that need
16+ significant digits differently in the last digit (and parses some long
decimal texts one ulp off).  Constants are converted in Python before binding,
so they are not affected.
"""

from __future__ import annotations

import json
import math
import re
import string
import typing as t
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache

from realtime_flask.core.rules.catalog import CatalogField

__all__ = [
    "AFF_BLOB",
    "AFF_NONE",
    "AFF_NUMERIC",
    "AFF_TEXT",
    "ASCII_LOWER",
    "Conv",
    "SqlValue",
    "as_numeric",
    "column_type",
    "compare",
    "compare_affinity",
    "conv_int",
    "conv_text",
    "field_conv",
    "go_float",
    "go_string",
    "json_array",
    "json_parse",
    "json_sql",
    "json_text",
    "json_text_lenient",
    "like_match",
    "to_text",
    "wrap_like",
]

#: A value as SQLite holds it: NULL, INTEGER, REAL or TEXT.
SqlValue: t.TypeAlias = int | float | str | None

# Column affinities, ordered like SQLite's SQLITE_AFF_* (NONE < BLOB < TEXT < NUMERIC).
AFF_NONE, AFF_BLOB, AFF_TEXT, AFF_NUMERIC = 0, 1, 2, 3
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NUMERIC_TEXT = re.compile(
    r"[ \t\n\v\f\r]*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[ \t\n\v\f\r]*"
)
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def json_text(value: object) -> str:
    """The JSON text stored for json, multi select and multi relation fields.

    Compact, ASCII-escaped (``json.dumps(value, separators=(",", ":"))``).  The
    in-memory backend re-creates the stored text with it, so the store must
    write exactly this.
    """
    return json.dumps(value, separators=(",", ":"))


def json_text_lenient(value: object) -> str:
    """:func:`json_text` that writes what JSON cannot encode as ``str(value)``."""
    return json.dumps(value, separators=(",", ":"), default=str)


def column_type(field: CatalogField) -> str:
    """The declared SQLite column type the rules assume for ``field`` (see the storage contract)."""
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


def to_text(v: int | float | str) -> str:
    """A non-NULL value as SQLite turns it into TEXT (a REAL as :func:`_real_text`)."""
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    return _real_text(v)


def go_float(x: float) -> str:
    """Go's ``strconv.FormatFloat(x, 'f', -1, 64)``: ``5``, ``0.1``, ``-0``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return format(Decimal(repr(x)).normalize(), "f")


def go_string(v: object) -> str:
    """Go's ``cast.ToString`` for the values a request can carry."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple, dict)):
        return ""
    return str(v)


def as_numeric(s: str) -> int | float | str:
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


def conv_text(v: object) -> SqlValue:
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
        return json_text_lenient(v)
    return str(v)


def _conv_real(v: object) -> SqlValue:
    """A Python value as a REAL-affinity column stores it."""
    if v is None:
        return None
    if isinstance(v, (bool, int, float)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, str):
        n = as_numeric(v)
        return n if isinstance(n, str) else float(n)
    return conv_text(v)


def conv_int(v: object) -> SqlValue:
    """A Python value as an INTEGER-affinity column stores it."""
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return _to_int64(v)
    if isinstance(v, str):
        n: SqlValue = as_numeric(v)
    elif isinstance(v, float):
        n = v
    else:
        return conv_text(v)
    if isinstance(n, float):
        if math.isnan(n):
            return None
        if n.is_integer() and _INT64_MIN <= n <= _INT64_MAX:
            return int(n)
    return n


def _conv_json(v: object) -> SqlValue:
    return None if v is None else json_text_lenient(v)


def _conv_multi(v: object) -> SqlValue:
    return json_text_lenient([] if v is None else v)


Conv: t.TypeAlias = Callable[[object], SqlValue]


def field_conv(f: CatalogField) -> tuple[Conv, int]:
    """How ``f``'s Python value is stored, and the column's affinity."""
    if f.type == "number":
        return _conv_real, AFF_NUMERIC
    if f.type == "bool":
        return conv_int, AFF_NUMERIC
    if f.type in ("json", "geoPoint"):
        return _conv_json, AFF_TEXT
    if f.multiple:
        return _conv_multi, AFF_TEXT
    return conv_text, AFF_TEXT


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def json_parse(v: SqlValue) -> tuple[bool, object]:
    """``json_valid`` and the parsed value (SQLite rejects NaN/Infinity)."""
    if v is None:
        return False, None
    try:
        return True, json.loads(to_text(v), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def json_sql(e: object) -> SqlValue:
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


def json_array(v: SqlValue) -> list[SqlValue] | None:
    """The items when ``v`` is JSON array text, else None."""
    ok, parsed = json_parse(v)
    if ok and isinstance(parsed, list):
        return [json_sql(e) for e in parsed]
    return None


def compare_affinity(a: int, b: int) -> int:
    """SQLite's ``sqlite3CompareAffinity``: which conversion a comparison applies."""
    if a > AFF_NONE and b > AFF_NONE:
        return AFF_NUMERIC if AFF_NUMERIC in (a, b) else AFF_BLOB
    return a if a > AFF_NONE else b


def _order(x: int | float | str, y: int | float | str) -> int:
    """SQLite ordering of two non-NULL values: numbers < text, text by code point."""
    xs, ys = isinstance(x, str), isinstance(y, str)
    if xs != ys:
        return 1 if xs else -1
    return (x > y) - (x < y)  # type: ignore[operator]


def compare(op: str, x: SqlValue, ax: int, y: SqlValue, ay: int) -> bool | None:
    aff = compare_affinity(ax, ay)
    if aff == AFF_NUMERIC:
        if isinstance(x, str):
            x = as_numeric(x)
        if isinstance(y, str):
            y = as_numeric(y)
    elif aff == AFF_TEXT and (isinstance(x, str) or isinstance(y, str)):
        if x is not None:
            x = to_text(x)
        if y is not None:
            y = to_text(y)
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
    return c.translate(ASCII_LOWER)


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


def like_match(text: str, pattern: str) -> bool:
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


def wrap_like(value: str) -> str:
    """PocketBase's ``wrapLikeParams``: ``%v%`` unless ``v`` has an unescaped ``%``."""
    if _contains_unescaped(value, "%"):
        return value
    return "%" + _escape_unescaped(value) + "%"
