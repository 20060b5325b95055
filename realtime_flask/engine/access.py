"""Who may see an event, and what they see: the realtime access layer.

``RealtimeManager.dispatch`` finds the clients subscribed to an event's topics;
a ``Visibility`` decides, per (client auth, subscription), whether a frame is
sent and which ``data:`` bytes it carries.  This module holds that protocol and
the views that need no record store: ``OpenVisibility`` (events as published)
and ``PythonRules`` (rules declared in Python).  The store-backed view,
``StoreVisibility``, lives with the store (``realtime_flask.store.visibility``).

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
4. Nothing here does IO or imports Flask or the store: the engine sits below
   ``store/`` and ``web/``, which plug their own ``Visibility`` in.
5. Custom messages (``TopicMessage``) never reach a ``Visibility``: no record,
   no collection rule.  Who receives one is the app's ``TopicAuthorizer``
   (``TopicMessageView``), asked per message once per subscriber's auth;
   without one every subscriber of the topic receives it, as in PocketBase.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable
from collections.abc import Mapping

from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.events import TopicMessage
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

__all__ = [
    "EventView",
    "OpenVisibility",
    "PythonRules",
    "RuleCallable",
    "TopicAuthorizer",
    "TopicMessageView",
    "Visibility",
    "auth_dict",
    "auth_key",
    "pick_fields",
]


class EventView(t.Protocol):
    """One event as its subscribers see it; lives for one dispatch of that event."""

    def data_for(self, user: AuthUser | None, sub: Subscription) -> bytes | None:
        """The frame's ``data:`` lines for this subscriber, or None for no frame.

        ``user`` is the client's auth (None for a guest), ``sub`` the matched
        subscription (topic and options).  The bytes are
        ``sse.format_data({"record": ..., "action": ...})``, PocketBase's payload
        (for a custom message: its ``data`` as one line of JSON).  It may
        raise: the manager then withholds only this subscriber's frame.
        """


class Visibility(t.Protocol):
    """Who may see an event, and what they see: what ``RealtimeManager.dispatch`` asks."""

    def begin(self, event: Event) -> EventView:
        """A per-event view holding that event's caches."""


def auth_key(user: AuthUser | None) -> tuple[str, str] | None:
    """What identifies a subscriber's auth for caching (None for guests)."""
    return None if user is None else (user.collection_id, user.id)


def auth_dict(user: AuthUser) -> dict[str, object]:
    """The subscriber's auth record as ``@request.auth`` sees it in a rule.

    The stored fields (``user.record``, no password hash) plus ``id``,
    ``collectionId`` and ``collectionName`` from the AuthUser itself.
    """
    return {
        **user.record,
        "id": user.id,
        "collectionId": user.collection_id,
        "collectionName": user.collection_name,
    }


def _field_paths(spec: str) -> list[list[str]]:
    return [p.strip().split(".") for p in spec.split(",") if p.strip()]


def pick_fields(data: t.Any, spec: str | list[list[str]]) -> t.Any:
    """Keep only the ``fields`` paths of ``data`` (``*`` = every key of that level).

    ``spec`` is PocketBase's ``fields`` parameter, e.g. ``id,title,expand.owner.name``:
    comma-separated dotted paths.  A list is picked item by item; a path that
    ends at a key keeps its whole value; keys not named are dropped; a scalar
    or an empty spec is returned unchanged.  A new object is built, ``data`` is
    not modified.  Shared by the realtime payloads and the REST API.
    """
    paths = _field_paths(spec) if isinstance(spec, str) else spec
    if isinstance(data, list):
        return [pick_fields(item, paths) for item in data]
    if not paths or not isinstance(data, dict):
        return data
    wildcard = any(p == ["*"] for p in paths)
    groups: dict[str, list[list[str]]] = {}
    for p in paths:
        groups.setdefault(p[0], []).append(p[1:])
    out: dict[str, t.Any] = {}
    for key, value in data.items():
        if key in groups:
            rests = groups[key]
            out[key] = value if any(not r for r in rests) else pick_fields(value, rests)
        elif wildcard:
            out[key] = value
    return out


class OpenVisibility:
    """Events as published by trusted code (``broadcast()``), with no access rules.

    The subscription's ``fields`` and ``filter`` options still apply (``filter``
    evaluated on the record's own keys; ``@request.*`` in it is refused for
    non-superusers, as in PocketBase).  ``expand`` needs the record store.
    """

    def __init__(self) -> None:
        self._filters: dict[tuple[str, str], CompiledRule | None] = {}

    def begin(self, event: Event) -> EventView:
        """A view sending the event's record as published (options applied)."""
        return _PublishedView(self, event)

    def allowed(self, event: Event, action: str, user: AuthUser | None) -> bool:
        """Whether ``user`` may see the event through a ``list`` or ``view`` topic: always."""
        return True

    def compiled_filter(self, collection: str, source: str) -> CompiledRule | None:
        """A ``filter`` option compiled once for schemaless records (None if it does not parse).

        The cache is cleared when it passes 4096 entries.
        """
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
                auth=None if user is None else auth_dict(user),
                superuser=superuser,
                context="realtime",
            )
            found = compiled is not None and (compiled.always or compiled.matches(self.record, ctx))
            self._filtered[key] = found
        return found


#: Who may receive a custom message: ``(auth or None, topic) -> bool``.  ``topic``
#: is the message's topic (``TopicMessage.topic``, never with ``?options=``);
#: the auth is the subscriber's (None for a guest; ``auth.superuser`` is set for
#: superusers, who get no pass of their own).
TopicAuthorizer = Callable[[AuthUser | None, str], bool]


class TopicMessageView:
    """One custom message as its subscribers see it, through a ``TopicAuthorizer``.

    The authorizer is called once per distinct auth record (guests once) for
    this message, when the message is delivered (and again when a resumed
    client replays it), never when a client subscribes: PocketBase accepts
    any topic on subscribe and decides per message, and the answer may change
    over a long stream (a member leaves the room, the client's auth is
    dropped after a password change).  A true result sends the message's
    JSON, a false one nothing; an exception propagates to the manager, which
    withholds only that subscriber's frame and logs it (the stream, and
    everybody else's frame, carry on).
    """

    __slots__ = ("_allowed", "_authorizer", "_data", "_topic")

    def __init__(self, message: TopicMessage, authorizer: TopicAuthorizer) -> None:
        self._topic = message.topic
        self._authorizer = authorizer
        self._data = sse.format_field("data", message.data_json)
        self._allowed: dict[tuple[str, str] | None, bool] = {}

    def data_for(self, user: AuthUser | None, sub: Subscription) -> bytes | None:
        """The message's ``data:`` line if the authorizer admits ``user``, else None."""
        key = auth_key(user)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = self._allowed[key] = bool(self._authorizer(user, self._topic))
        return self._data if allowed else None


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
        """Whether ``user`` passes the rule for ``action`` (``list``/``view``) of the
        first of the event's names (collection name, then id) declared here."""
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
            ctx = RequestContext(auth=None if user is None else auth_dict(user), context="realtime")
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
