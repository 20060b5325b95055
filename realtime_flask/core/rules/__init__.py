"""Access rules and list filters: PocketBase's filter language, parsed once, run two ways.

The pipeline, and the module owning each step::

    "owner = @request.auth.id && views > 10"                   text
       |  syntax.parse            tokenizer + parser            RuleSyntaxError
       v
    Or / And / Comparison(Identifier, Text, Number)            syntax tree
       |  resolve.Resolver        names checked against the     RuleResolveError
       |                          collection (catalog)
       v
    ResolvedCmp(FieldRef, RequestRef, ...) / ResolvedJoin      resolved tree
       |                                  compile_rule stops here: CompiledRule
       |  lower.Lowering          per RequestContext: the
       |                          request's values bound, each
       |                          operator given its meaning
       v
    tree.Bool of tree.Value / tree.Source nodes                lowered tree
       |                                    |
       |  node.sql(Renderer)                |  node.ev(Env), with values'
       v                                    v  SQLite semantics
    CompiledRule.to_sql                    CompiledRule.matches
    ("(... = ?)", [params])                 True / False for one record

- ``syntax``: tokens, the parser, the syntax tree, the limits; ``RuleError``.
- ``catalog``: the protocols a collection and a schema satisfy (``core.schema``
  does, without this package importing it).
- ``resolve``: identifier and field resolution, once per rule.
- ``context``: ``RequestContext`` (what ``@request.*`` sees), ``RelationLookup``.
- ``values``: SQLite value semantics (affinity, comparison, ``LIKE``, JSON) and
  the storage contract (``column_type``, ``json_text``).
- ``tree``: the lowered nodes, each with ``.sql()`` and ``.ev()``.
- ``lower``: lowering, with PocketBase's semantics of each operator.
- ``compiled``: ``compile_rule`` and ``CompiledRule``, the API the rest uses.

Rules of this package:

1. Pure.  Only the stdlib and ``realtime_flask.errors`` are imported: no
   sqlite3, Flask, gevent or redis, and no other ``core`` module
   (``core.schema`` imports this package to compile its rules).  The one clock
   read is the date macros (``@now``...) when ``RequestContext.now`` is None.
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

PocketBase's behaviour followed, and where and why we diverge from it, is
written down in the module of each step: lexical rules in ``syntax``,
identifiers in ``resolve``, operators and multi-valued operands in ``lower``,
SQLite values and the storage contract in ``values``.

Modules of this package import each other by their full names
(``realtime_flask.core.rules.values``), never this ``__init__``.
"""

from __future__ import annotations

from realtime_flask.core.rules.catalog import Catalog
from realtime_flask.core.rules.catalog import CatalogCollection
from realtime_flask.core.rules.catalog import CatalogField
from realtime_flask.core.rules.compiled import CompiledRule
from realtime_flask.core.rules.compiled import compile_rule
from realtime_flask.core.rules.context import GUEST
from realtime_flask.core.rules.context import RelationLookup
from realtime_flask.core.rules.context import RequestContext
from realtime_flask.core.rules.resolve import RuleResolveError
from realtime_flask.core.rules.syntax import MAX_EXPRESSIONS
from realtime_flask.core.rules.syntax import MAX_FILTER_LENGTH
from realtime_flask.core.rules.syntax import OPERATORS
from realtime_flask.core.rules.syntax import And
from realtime_flask.core.rules.syntax import Comparison
from realtime_flask.core.rules.syntax import Expr
from realtime_flask.core.rules.syntax import Identifier
from realtime_flask.core.rules.syntax import Number
from realtime_flask.core.rules.syntax import Operand
from realtime_flask.core.rules.syntax import Or
from realtime_flask.core.rules.syntax import RuleError
from realtime_flask.core.rules.syntax import RuleSyntaxError
from realtime_flask.core.rules.syntax import Text
from realtime_flask.core.rules.syntax import parse
from realtime_flask.core.rules.tree import quote_identifier
from realtime_flask.core.rules.values import SqlValue
from realtime_flask.core.rules.values import column_type
from realtime_flask.core.rules.values import json_text

__all__ = [
    "GUEST",
    "MAX_EXPRESSIONS",
    "MAX_FILTER_LENGTH",
    "OPERATORS",
    "And",
    "Catalog",
    "CatalogCollection",
    "CatalogField",
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
    "quote_identifier",
    "compile_rule",
    "json_text",
    "parse",
]
