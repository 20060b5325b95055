"""Step 1, text to syntax tree: the tokenizer and parser of PocketBase's filter language.

``parse(source) -> Expr``: an ``Or``/``And`` of ``Comparison`` nodes whose
operands are ``Identifier``, ``Text`` or ``Number``.  Nothing is resolved here:
an identifier is only a name (``title``, ``owner.name:lower``, ``@request.auth.id``,
``null``...).  Errors are :class:`RuleSyntaxError` with the 0-based offset.

The lexical rules are ganigeorgiev/fexpr's (what PocketBase 0.40.6 uses):

- ``&&`` binds tighter than ``||``; parentheses group; ``//`` starts a comment
  to the end of the line.
- Sixteen comparison operators (:data:`OPERATORS`); an operator of the same
  characters that is not one of them is an error.
- Numbers are floats (PocketBase binds float64; an overflowing literal is 0,
  like ``cast.ToFloat64``).
- Limits: :data:`MAX_EXPRESSIONS` comparisons, :data:`MAX_DEPTH` nested
  parentheses.

Deliberate divergences from fexpr -- don't "fix" them without reading why:

- Strings: ``\\\\`` is an escape for one backslash (PocketBase keeps both
  characters and cannot end a string with a backslash).  The JS SDK's
  ``pb.filter()`` emits ``JSON.stringify`` strings, which need it.
- The grammar is strict: fexpr silently drops a half-written term before a
  parenthesis (``a (b = 1)``) or joins adjacent groups; we raise.
- Function calls (``name(...)``) are refused here.

:class:`RuleError`, the base of every error of the language, lives here too:
this is the first step that raises.
"""

from __future__ import annotations

import math
import string
import typing as t
from dataclasses import dataclass

from realtime_flask.errors import GENERIC_400
from realtime_flask.errors import RealtimeError

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSIONS",
    "MAX_FILTER_LENGTH",
    "OPERATORS",
    "And",
    "Comparison",
    "Expr",
    "Identifier",
    "Number",
    "Operand",
    "Or",
    "RuleError",
    "RuleSyntaxError",
    "Text",
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
