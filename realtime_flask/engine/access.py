"""Who may see an event, and what they see: the realtime access layer.

``RealtimeManager.dispatch`` finds the clients subscribed to an event's topics;
a ``Visibility`` decides, per (client auth, subscription), whether a frame is
sent and which ``data:`` bytes it carries.

Rules:

1. One ``EventView`` per event holds every cache of that event, so each
   (rule, auth record) pair is evaluated once and each distinct payload is
   encoded once, however many clients share it.
2. A topic ``c/<id>`` is checked against the collection's viewRule, ``c/*``
   and bare ``c`` against its listRule; ``None`` (locked) admits superusers
   only, ``""`` everyone; superusers pass every rule but still get their
   ``filter`` option applied.
3. A ``filter`` option that does not parse, or that uses ``@request.`` /
   ``@collection.`` for a non-superuser, yields no frame (PocketBase refuses it
   silently).
4. Nothing here imports Flask; the store-backed visibility does IO only
   through ``RecordStore`` (relation lookups for rules and ``expand``).
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable
from collections.abc import Mapping

from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.rules import And
from realtime_flask.core.rules import Comparison
from realtime_flask.core.rules import CompiledRule
from realtime_flask.core.rules import Expr
from realtime_flask.core.rules import Identifier
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.rules import RuleError
from realtime_flask.core.rules import compile_rule
from realtime_flask.core.rules import parse
from realtime_flask.core.schema import Collection
from realtime_flask.core.schema import Field
from realtime_flask.core.schema import Schema
from realtime_flask.core.topics import Subscription
from realtime_flask.store.records import RecordStore
from realtime_flask.store.records import pick_fields

__all__ = [
    "EventView",
    "OpenVisibility",
    "PythonRules",
    "RuleCallable",
    "StoreVisibility",
    "Visibility",
    "auth_key",
]


class EventView(t.Protocol):
    def data_for(self, user: AuthUser | None, sub: Subscription) -> bytes | None:
        """The frame's ``data:`` lines for this subscriber, or None for no frame."""


class Visibility(t.Protocol):
    def begin(self, event: Event) -> EventView:
        """A per-event view holding that event's caches."""


def auth_key(user: AuthUser | None) -> tuple[str, str] | None:
    """What identifies a subscriber's auth for caching (None for guests)."""
    return None if user is None else (user.collection_id, user.id)


class OpenVisibility:
    """Events as published by trusted code (``broadcast()``), with no access rules.

    The subscription's ``fields`` and ``filter`` options still apply (``filter``
    evaluated on the record's own keys; ``@request.*`` in it is refused for
    non-superusers, as in PocketBase).  ``expand`` needs the record store.
    """

    def __init__(self) -> None:
        self._filters: dict[tuple[str, str], CompiledRule | None] = {}

    def begin(self, event: Event) -> EventView:
        return _PublishedView(self, event)

    def allowed(self, event: Event, action: str, user: AuthUser | None) -> bool:
        return True

    def compiled_filter(self, collection: str, source: str) -> CompiledRule | None:
        key = (collection, source)
        if key not in self._filters:
            if len(self._filters) > 4096:
                self._filters.clear()
            try:
                self._filters[key] = _compile_schemaless(collection, source)
            except RuleError:
                self._filters[key] = None
        return self._filters[key]


class _PublishedView:
    def __init__(self, owner: OpenVisibility, event: Event) -> None:
        self.owner = owner
        self.event = event
        self.record: Mapping[str, object] = event.stored or event.record
        self._allowed: dict[tuple[str, tuple[str, str] | None], bool] = {}
        self._filtered: dict[tuple[str, tuple[str, str] | None], bool] = {}
        self._payloads: dict[str, bytes] = {}

    def data_for(self, user: AuthUser | None, sub: Subscription) -> bytes | None:
        action = "list" if sub.record_id is None else "view"
        key = (action, auth_key(user))
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = self._allowed[key] = self.owner.allowed(self.event, action, user)
        if not allowed:
            return None
        query = sub.options.query
        source = query.get("filter", "")
        if source and not self._passes_filter(source, user):
            return None
        fields = query.get("fields", "")
        data = self._payloads.get(fields)
        if data is None:
            record = pick_fields(dict(self.event.record), fields) if fields else self.event.record
            data = self._payloads[fields] = sse.format_data(
                {"record": record, "action": self.event.action}
            )
        return data

    def _passes_filter(self, source: str, user: AuthUser | None) -> bool:
        superuser = user is not None and user.superuser
        if not superuser and ("@request." in source or "@collection." in source):
            return False
        key = (source, auth_key(user))
        found = self._filtered.get(key)
        if found is None:
            compiled = self.owner.compiled_filter(self.event.collection, source)
            ctx = RequestContext(
                auth=None if user is None else _auth_dict(user),
                superuser=superuser,
                context="realtime",
            )
            found = compiled is not None and (compiled.always or compiled.matches(self.record, ctx))
            self._filtered[key] = found
        return found


#: A Python rule: (record, auth or None) -> may this auth see the record?
RuleCallable = Callable[[Mapping[str, object], AuthUser | None], bool]


class PythonRules(OpenVisibility):
    """Access rules declared in Python, for apps without the embedded store.

    ::

        rules = PythonRules({
            "posts": {"list": "", "view": ""},                        # public
            "notes": {"list": "owner = @request.auth.id",
                      "view": lambda rec, auth: auth is not None and rec["owner"] == auth.id},
            "audit": {"list": None, "view": None},                    # superusers only
        })
        Realtime(app, visibility=rules)

    Per collection and action (``list`` for ``c/*`` and ``c``, ``view`` for
    ``c/<id>``): ``None`` = superusers only, ``""`` = everyone, a callable is
    called with the record and the subscriber's AuthUser, and any other string
    is a PocketBase rule evaluated on the record (identifiers are the record's
    keys; ``@request.auth.*`` reads the subscriber's auth record).  A
    collection missing from the mapping is open to everyone, as with
    ``broadcast()`` alone; an action missing from a collection's mapping is
    ``None``, like an unset PocketBase rule.  Results are cached per
    (rule, auth) for each event.
    """

    def __init__(self, rules: Mapping[str, Mapping[str, RuleCallable | str | None]]) -> None:
        super().__init__()
        self._rules: dict[tuple[str, str], RuleCallable | CompiledRule | None] = {}
        self._declared = frozenset(rules)
        for collection, actions in rules.items():
            for action, rule in actions.items():
                if action not in ("list", "view"):
                    raise ValueError(f"realtime rules are 'list' and 'view', got {action!r}")
                if isinstance(rule, str):
                    self._rules[(collection, action)] = _compile_schemaless(collection, rule)
                else:
                    self._rules[(collection, action)] = rule

    def allowed(self, event: Event, action: str, user: AuthUser | None) -> bool:
        for name in event.names:
            if name in self._declared:
                rule = self._rules.get((name, action))
                break
        else:
            return True
        if user is not None and user.superuser:
            return True
        if rule is None:
            return False
        record = event.stored or event.record
        if isinstance(rule, CompiledRule):
            ctx = RequestContext(
                auth=None if user is None else _auth_dict(user), context="realtime"
            )
            return rule.always or rule.matches(record, ctx)
        return bool(rule(record, user))


def _identifiers(expr: Expr) -> t.Iterator[str]:
    if isinstance(expr, Comparison):
        for operand in (expr.left, expr.right):
            if isinstance(operand, Identifier):
                yield operand.name
    else:
        for term in expr.terms:
            yield from _identifiers(term)


def _compile_schemaless(collection: str, source: str) -> CompiledRule:
    """Compile a rule for records that have no schema.

    Every field the rule names is declared as a ``json`` field, so it compares
    by its JSON value (``"a"`` = 'a', ``5`` = 5, paths like ``meta.kind`` work);
    relation hops need the record store.
    """
    names: set[str] = set()
    if source.strip():
        for name in _identifiers(parse(source)):
            head = name.split(".", 1)[0].split(":", 1)[0]
            if head and not head.startswith("@") and head not in ("null", "true", "false"):
                names.add(head)
    names.discard("id")
    coll = Collection(
        id=collection,
        name=collection,
        type="base",
        fields=(
            Field("id", "text", system=True),
            *(Field(n, "json") for n in sorted(names)),
        ),
    )
    return compile_rule(source, coll, Schema([coll]))


def _auth_dict(user: AuthUser) -> dict[str, object]:
    return {
        **user.record,
        "id": user.id,
        "collectionId": user.collection_id,
        "collectionName": user.collection_name,
    }


class StoreVisibility:
    """Rules, options and serialisation of the embedded record store."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self._published = OpenVisibility()
        self._filters: dict[tuple[str, str], CompiledRule | None] = {}
        self._plans: dict[tuple[str, str], _SubscriptionPlan] = {}

    def begin(self, event: Event) -> EventView:
        """Store writes go through the rules; an event published by trusted code
        (``broadcast()``, the publish route) without a stored record is sent as
        published, like a custom message through PocketBase's broker."""
        coll = self.store.schema.get(event.collection_id or event.collection)
        if coll is None or event.stored is None:
            return self._published.begin(event)
        return _StoreEventView(self, coll, event)

    def compiled_filter(self, coll: Collection, source: str) -> CompiledRule | None:
        """A subscription's ``filter`` option, compiled once (None if it does not parse)."""
        key = (coll.id, source)
        if key not in self._filters:
            if len(self._filters) > 4096:
                self._filters.clear()
            try:
                self._filters[key] = compile_rule(
                    source, coll, self.store.schema, client_filter=True
                )
            except RuleError:
                self._filters[key] = None
        return self._filters[key]

    def plan(self, coll: Collection, sub: Subscription) -> _SubscriptionPlan:
        """What checking ``sub`` against ``coll`` takes, worked out once per topic."""
        key = (coll.id, sub.raw)
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) > 4096:
                self._plans.clear()
            found = self._plans[key] = _SubscriptionPlan(self, coll, sub)
        return found


class _SubscriptionPlan:
    """Per (collection, topic): the rule, its cache-key parts, the options.

    ``guard`` names a field F when the rule requires ``F = @request.auth.id``
    (a top-level conjunct) and F holds one text value: a record whose F is a
    non-empty string other than the subscriber's id fails the rule without
    evaluating it, which is what makes an owner rule cost O(1) per subscriber.
    """

    __slots__ = (
        "expand",
        "fields",
        "filter",
        "guard",
        "rule",
        "rule_headers",
        "rule_query",
        "sub",
    )

    def __init__(self, owner: StoreVisibility, coll: Collection, sub: Subscription) -> None:
        action = "list" if sub.record_id is None else "view"
        rule: CompiledRule | None = owner.store.schema.compiled_rule(coll, action)
        self.sub = sub
        self.rule = rule
        query = sub.options.query
        self.filter = query.get("filter", "")
        self.fields = query.get("fields", "")
        self.expand = query.get("expand", "")
        self.rule_headers = rule is not None and rule.references("@request.headers")
        self.rule_query = rule is not None and rule.references("@request.query")
        self.guard = None if rule is None or rule.always else _auth_id_guard(rule, coll)


def _auth_id_guard(rule: CompiledRule, coll: Collection) -> str | None:
    """The field F of a top-level ``F = @request.auth.id`` conjunct, if F is single-valued text."""
    expr = rule.expr
    if expr is None:
        return None
    terms = expr.terms if isinstance(expr, And) else (expr,)
    for term in terms:
        if not isinstance(term, Comparison) or term.op != "=":
            continue
        left, right = term.left, term.right
        if not (isinstance(left, Identifier) and isinstance(right, Identifier)):
            continue
        if right.name != "@request.auth.id":
            left, right = right, left
        if right.name != "@request.auth.id":
            continue
        field = coll.field(left.name)
        if field is not None and field.type in ("text", "relation") and not field.multiple:
            return field.name
    return None


class _StoreEventView:
    def __init__(self, owner: StoreVisibility, coll: Collection, event: Event) -> None:
        self.owner = owner
        self.store = owner.store
        self.coll = coll
        self.event = event
        self.record: dict[str, t.Any] = dict(event.stored or event.record)
        self._checks: dict[tuple[object, ...], bool] = {}
        self._payloads: dict[tuple[object, ...], bytes] = {}

    def _ctx(self, user: AuthUser | None, sub: Subscription) -> RequestContext:
        return RequestContext(
            auth=None if user is None else _auth_dict(user),
            superuser=user is not None and user.superuser,
            headers=dict(sub.options.headers),
            query=dict(sub.options.query),
            context="realtime",
        )

    def _passes(
        self,
        key: tuple[object, ...],
        rule: CompiledRule,
        user: AuthUser | None,
        sub: Subscription,
    ) -> bool:
        found = self._checks.get(key)
        if found is None:
            found = self._checks[key] = rule.matches(
                self.record, self._ctx(user, sub), self.store.lookup
            )
        return found

    def data_for(self, user: AuthUser | None, sub: Subscription) -> bytes | None:
        plan = self.owner.plan(self.coll, sub)
        superuser = user is not None and user.superuser
        rule = plan.rule
        if not superuser:
            if rule is None:
                return None
            if not rule.always:
                guard = plan.guard
                if guard is not None and user is not None:
                    value = self.record.get(guard)
                    if type(value) is str and value and value != user.id:
                        return None  # fails F = @request.auth.id whatever else it says
                key: tuple[object, ...] = ("rule", rule.source, auth_key(user))
                if plan.rule_headers:
                    key += (tuple(sorted(sub.options.headers.items())),)
                if plan.rule_query:
                    key += (tuple(sorted(sub.options.query.items())),)
                if not self._passes(key, rule, user, sub):
                    return None
        source = plan.filter
        if source:
            if not superuser and ("@request." in source or "@collection." in source):
                return None
            compiled = self.owner.compiled_filter(self.coll, source)
            if compiled is None:
                return None
            if not compiled.always:
                key = ("filter", source, auth_key(user))
                if compiled.references("@request.headers"):
                    key += (tuple(sorted(sub.options.headers.items())),)
                if compiled.references("@request.query"):
                    key += (tuple(sorted(sub.options.query.items())),)
                if not self._passes(key, compiled, user, sub):
                    return None
        return self._payload(user, sub, plan, superuser)

    def _payload(
        self, user: AuthUser | None, sub: Subscription, plan: _SubscriptionPlan, superuser: bool
    ) -> bytes:
        fields = plan.fields
        expand = plan.expand
        own = (
            user is not None
            and user.collection_id == self.coll.id
            and user.id == self.record.get("id")
        )
        audience: object = "superuser" if superuser else ("own" if own else "other")
        if expand:  # related records pass their own viewRule for this very request
            # (auth, headers and query: the viewRule may read @request.headers/query)
            audience = (audience, auth_key(user), sub.options)
        key = (audience, fields, expand)
        data = self._payloads.get(key)
        if data is None:
            shown = self.store.present(
                self.coll, self.record, self._ctx(user, sub), fields=fields, expand=expand
            )
            data = self._payloads[key] = sse.format_data(
                {"record": shown, "action": self.event.action}
            )
        return data
