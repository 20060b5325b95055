"""The top of the pipeline: :func:`compile_rule` and the :class:`CompiledRule` it returns.

``compile_rule(source, collection, schema)`` parses and resolves once
(``syntax``, ``resolve``); the compiled rule lowers per request context
(``lower``) and prints the lowered tree as SQL (``to_sql``) or evaluates it on
one record (``matches``), with the same meaning.
"""

from __future__ import annotations

from collections.abc import Mapping

from realtime_flask.core.rules.catalog import Catalog
from realtime_flask.core.rules.catalog import CatalogCollection
from realtime_flask.core.rules.context import RelationLookup
from realtime_flask.core.rules.context import RequestContext
from realtime_flask.core.rules.lower import Lowering
from realtime_flask.core.rules.resolve import ResolvedExpr
from realtime_flask.core.rules.resolve import Resolver
from realtime_flask.core.rules.syntax import MAX_FILTER_LENGTH
from realtime_flask.core.rules.syntax import Expr
from realtime_flask.core.rules.syntax import RuleSyntaxError
from realtime_flask.core.rules.syntax import parse
from realtime_flask.core.rules.tree import Bool
from realtime_flask.core.rules.tree import Env
from realtime_flask.core.rules.tree import Renderer

__all__ = ["CompiledRule", "compile_rule"]


class CompiledRule:
    """A rule or filter resolved against one collection; reusable and thread-safe.

    ``always`` is True for the empty rule ("everyone"); ``expr`` is its syntax
    tree (None for ``""``).  :meth:`matches` and :meth:`to_sql` take the
    request's :class:`RequestContext` and lower the rule for it (the last
    lowering is kept, keyed by the context object); a malformed ``ctx.now``
    raises ValueError there.
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
        collection: CatalogCollection,
        expr: Expr | None,
        compiled: ResolvedExpr | None,
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
        self._last: tuple[RequestContext, Bool] | None = None

    def __repr__(self) -> str:
        return f"<CompiledRule {self._collection.name!r} {self.source!r}>"

    def references(self, prefix: str) -> bool:
        """Whether the rule's result can depend on identifiers starting with ``prefix``.

        ``references("@request.auth")`` is also True for client filters that
        compare an auth collection's ``email`` (its visibility depends on the
        requester).
        """
        return any(name.startswith(prefix) for name in self._names)

    def _lower(self, ctx: RequestContext) -> Bool:
        last = self._last
        if last is not None and last[0] is ctx:
            return last[1]
        assert self._compiled is not None
        tree = Lowering(self._collection, ctx, self.client_filter).expr(self._compiled)
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
        :raises TypeError: ``needs_lookup`` and no ``lookup``.
        """
        if self._compiled is None:
            return True
        if self.needs_lookup and lookup is None:
            raise TypeError(f"{self!r} follows a relation: matches() needs a RelationLookup")
        return self._lower(ctx).ev(Env(record, lookup)) is True

    def to_sql(self, table: str, ctx: RequestContext) -> tuple[str, list[object]]:
        """An SQLite boolean expression over ``table`` and its ``?`` parameters."""
        if self._compiled is None:
            return "1", []
        r = Renderer(table)
        return self._lower(ctx).sql(r), r.params


def compile_rule(
    source: str,
    collection: CatalogCollection,
    schema: Catalog,
    *,
    client_filter: bool = False,
) -> CompiledRule:
    """Parse ``source`` and resolve it against ``collection``.

    ``""`` is the "everyone" rule (never parsed).  ``client_filter=True`` is a
    user-supplied ``filter``: hidden fields are refused and hidden emails do not
    match (see ``realtime_flask.core.rules.lower``).

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
    resolver = Resolver(collection, schema, client_filter)
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
