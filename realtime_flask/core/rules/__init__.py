"""PocketBase's filter language (being split into one module per step; see ``tree``)."""

from __future__ import annotations

from realtime_flask.core.rules.tree import GUEST
from realtime_flask.core.rules.tree import MAX_EXPRESSIONS
from realtime_flask.core.rules.tree import MAX_FILTER_LENGTH
from realtime_flask.core.rules.tree import OPERATORS
from realtime_flask.core.rules.tree import And
from realtime_flask.core.rules.tree import Comparison
from realtime_flask.core.rules.tree import CompiledRule
from realtime_flask.core.rules.tree import Expr
from realtime_flask.core.rules.tree import Identifier
from realtime_flask.core.rules.tree import Number
from realtime_flask.core.rules.tree import Operand
from realtime_flask.core.rules.tree import Or
from realtime_flask.core.rules.tree import RelationLookup
from realtime_flask.core.rules.tree import RequestContext
from realtime_flask.core.rules.tree import RuleError
from realtime_flask.core.rules.tree import RuleResolveError
from realtime_flask.core.rules.tree import RuleSyntaxError
from realtime_flask.core.rules.tree import SqlValue
from realtime_flask.core.rules.tree import Text
from realtime_flask.core.rules.tree import column_type
from realtime_flask.core.rules.tree import compile_rule
from realtime_flask.core.rules.tree import json_text
from realtime_flask.core.rules.tree import parse

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
