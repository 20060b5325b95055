"""Who sees a store event, and what they see: the embedded store's realtime ``Visibility``.

``StoreVisibility`` is what ``create_app`` plugs into the realtime hub: for an
event of a stored collection it applies that collection's API rules and the
subscription's options, and renders the record as the REST API would.

Rules:

1. A topic ``c/<id>`` is checked against the collection's viewRule, ``c/*``
   and bare ``c`` against its listRule, evaluated in memory on the event's
   stored record (``CompiledRule.matches``, which agrees with the SQL the REST
   API runs); relation hops read through ``RecordStore.lookup`` (off the
   gevent hub, like every store statement), once per event and id set: the
   event's view shares each lookup among its subscribers.  An event whose
   rules and options follow no relation (a public collection) reads nothing.  ``None``
   (locked) admits superusers only; superusers pass every rule but still get
   their ``filter`` option applied.
2. A ``filter`` option is compiled as a client filter (hidden fields refused);
   one that does not parse, or that uses ``@request.`` / ``@collection.`` for a
   non-superuser, yields no frame (PocketBase refuses it silently).
3. The payload is ``RecordStore.present`` for that subscriber (hidden fields,
   ``emailVisibility``, ``expand`` through each related record's own viewRule,
   ``fields``), encoded once per distinct audience and options.
4. An event published by trusted code (``broadcast()``, the publish route)
   for a collection of the store goes through that collection's rules like a
   write through the API, evaluated on the published record (no hidden field
   of it is shown).  Sent as published (``engine.access.OpenVisibility``):
   an event of a collection the schema does not know, like a custom message
   through PocketBase's broker, and one marked ``unfiltered`` explicitly.
5. Caches: per event in the ``EventView`` (checks, payloads, relation
   lookups); across events, compiled filters and
   per-topic plans, each table cleared when it passes 4096 entries.
"""

from __future__ import annotations

import typing as t
from collections.abc import Sequence

from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.rules import And
from realtime_flask.core.rules import Comparison
from realtime_flask.core.rules import CompiledRule
from realtime_flask.core.rules import Identifier
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.rules import RuleError
from realtime_flask.core.rules import compile_rule
from realtime_flask.core.schema import Collection
from realtime_flask.core.topics import Subscription
from realtime_flask.engine.access import EventView
from realtime_flask.engine.access import OpenVisibility
from realtime_flask.engine.access import auth_dict
from realtime_flask.engine.access import auth_key
from realtime_flask.store.present import present_record
from realtime_flask.store.records import RecordStore
from realtime_flask.store.sql import Record

__all__ = ["StoreVisibility"]


class StoreVisibility:
    """The ``Visibility`` of a ``RecordStore``'s events: its rules, options and serialisation.

    :param store: the store whose schema (rules) and reads (relation lookups,
        ``present``) are used; the events themselves come from the broker.
    """

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
        if coll is None or event.unfiltered:
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


class _EventReads:
    """The store's reads during one event's fan-out: a relation lookup runs once
    per (collection, ids) for all of the event's subscribers."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.schema = store.schema
        self._found: dict[tuple[str, tuple[str, ...]], list[Record]] = {}

    def lookup(self, collection_id: str, ids: Sequence[str]) -> list[Record]:
        key = (collection_id, tuple(ids))
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = self.store.lookup(collection_id, ids)
        return found

    def can_access(
        self, coll: Collection, action: str, record_id: str, ctx: RequestContext
    ) -> bool:
        return self.store.can_access(coll, action, record_id, ctx)


class _StoreEventView:
    def __init__(self, owner: StoreVisibility, coll: Collection, event: Event) -> None:
        self.owner = owner
        self.store = owner.store
        self.reads = _EventReads(owner.store)
        self.coll = coll
        self.event = event
        self.record: dict[str, t.Any] = dict(event.stored or event.record)
        self._checks: dict[tuple[object, ...], bool] = {}
        self._payloads: dict[tuple[object, ...], bytes] = {}

    def _ctx(self, user: AuthUser | None, sub: Subscription) -> RequestContext:
        return RequestContext(
            auth=None if user is None else auth_dict(user),
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
                self.record, self._ctx(user, sub), self.reads.lookup
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
            shown = present_record(
                self.reads,
                self.coll,
                self.record,
                self._ctx(user, sub),
                fields=fields,
                expand=expand,
            )
            data = self._payloads[key] = sse.format_data(
                {"record": shown, "action": self.event.action}
            )
        return data
