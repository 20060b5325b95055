"""The Flask extension: ``Realtime(app)`` / ``init_app``, ``broadcast`` and ``send``.

Rule: the extension object is app-agnostic; per-app state (the hub:
``realtime_flask.engine.hub.RealtimeState``) lives in
``app.extensions["realtime"]`` and views reach it through ``get_state``
(``realtime_flask.web.state``).  ``init_app`` builds the hub once, with every
part it needs (broker, visibility, auth hooks), and never changes it afterwards.
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import Request

from realtime_flask import runtime
from realtime_flask.config import Settings
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.events import TopicMessage
from realtime_flask.engine.broker import Broker
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.engine.hub import RESET_EVENT
from realtime_flask.engine.hub import AuthRefresher
from realtime_flask.engine.hub import RealtimeState
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.manager import Reaper
from realtime_flask.engine.router import LocalRouter
from realtime_flask.engine.router import Router
from realtime_flask.web.api.clients import bp as clients_bp
from realtime_flask.web.api.metrics import ProcessMetrics
from realtime_flask.web.api.metrics import bp as metrics_bp
from realtime_flask.web.api.metrics import install as install_metrics
from realtime_flask.web.api.realtime import bp as realtime_bp
from realtime_flask.web.commands import realtime_group
from realtime_flask.web.proxies import trust_proxies
from realtime_flask.web.state import EXTENSION_KEY
from realtime_flask.web.state import get_state

if t.TYPE_CHECKING:
    from realtime_flask.engine.access import TopicAuthorizer
    from realtime_flask.engine.access import Visibility

__all__ = [
    "EXTENSION_KEY",
    "RESET_EVENT",
    "AuthResolver",
    "Realtime",
    "RealtimeState",
    "build_broker",
    "get_state",
]

#: Turns a request into the auth record it carries (None = guest).
AuthResolver = t.Callable[[Request], AuthUser | None]


def _guest(request: Request) -> AuthUser | None:
    return None


class Realtime:
    """PocketBase-compatible realtime for a Flask app.

    ::

        realtime = Realtime()

        def create_app():
            app = Flask(__name__)
            realtime.init_app(app)
            return app

        # later, in a view that changed a record:
        realtime.broadcast("posts", "update", {"id": post.id, "title": post.title})

        # or a custom message to a topic that is not a collection
        # (the SDK: pb.realtime.subscribe("chat-room-1", (data) => ...)):
        realtime.send("chat-room-1", {"from": user.id, "text": "hi"})

    :param app: initialise at once for this app (else call ``init_app``).
    :param broker: the event broker; by default ``build_broker(settings)``: a
        RedisBroker with ``REALTIME_REDIS_URL``, else a process-local MemoryBroker.
    :param auth_resolver: maps a request to its AuthUser (None = guest); every
        request is a guest by default.
    :param visibility: who sees which event (``realtime_flask.engine.access``), e.g.
        ``PythonRules({...})``; by default every subscriber sees every event.
    :param auth_refresher: re-reads a resumed client's auth (None = keep it as parked).
    :param topic_authorizer: who may receive which custom message (``send``):
        called as ``topic_authorizer(auth, topic)`` with the subscriber's
        AuthUser (None for a guest) and the message's topic; a true result lets
        the frame go out.  Asked once per message per distinct auth record, in
        the fan-out of every worker (and again on a resume's replay), never
        when a client subscribes, so a revoked right takes effect on the next
        message.  One that raises withholds that subscriber's frame and is
        logged; the stream and the other subscribers carry on.  Keep it fast:
        it runs in the fan-out.  None (the default): every subscriber of the
        topic receives it, as in PocketBase.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        broker: Broker | None = None,
        auth_resolver: AuthResolver | None = None,
        visibility: Visibility | None = None,
        auth_refresher: AuthRefresher | None = None,
        topic_authorizer: TopicAuthorizer | None = None,
    ) -> None:
        self._broker = broker
        self._auth_resolver = auth_resolver
        self._visibility = visibility
        self._auth_refresher = auth_refresher
        self._topic_authorizer = topic_authorizer
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        broker: Broker | None = None,
        auth_resolver: AuthResolver | None = None,
        visibility: Visibility | None = None,
        auth_refresher: AuthRefresher | None = None,
        topic_authorizer: TopicAuthorizer | None = None,
    ) -> None:
        """Build ``app``'s hub, start it and register the realtime routes.

        Each keyword wins over the one given to the constructor (see the class
        for their meaning).  Raises ConfigError for a bad ``REALTIME_*``
        setting, and what starting the broker or the router raises (e.g.
        BrokerUnavailable under gevent with unpatched sockets).
        """
        settings = Settings.from_mapping(app.config)
        manager = RealtimeManager(
            queue_size=settings.queue_size,
            idle_timeout=settings.idle_timeout,
            max_lifetime=settings.max_lifetime,
            max_clients=settings.max_clients,
            max_clients_per_addr=settings.max_clients_per_ip,
            write_timeout=settings.write_timeout,
            queue_bytes=settings.queue_bytes,
        )
        broker = _first(broker, self._broker)
        if broker is None:
            broker = build_broker(settings)
        visibility = _first(visibility, self._visibility)
        if visibility is None:
            visibility = _open_visibility()
        resolver = _first(auth_resolver, self._auth_resolver)
        reaper = Reaper(manager, settings.reaper_interval) if settings.reaper_enabled else None
        metrics = ProcessMetrics()
        state = RealtimeState(
            settings=settings,
            manager=manager,
            broker=broker,
            reaper=reaper,
            auth_resolver=_guest if resolver is None else resolver,
            visibility=visibility,
            router=_build_router(settings, manager),
            auth_refresher=_first(auth_refresher, self._auth_refresher),
            topic_authorizer=_first(topic_authorizer, self._topic_authorizer),
            on_dispatch=metrics.on_dispatch,
        )
        state.start()
        app.extensions[EXTENSION_KEY] = state
        install_metrics(app, state, metrics)
        trust_proxies(app, settings.trusted_proxies)
        app.register_blueprint(realtime_bp)
        app.register_blueprint(metrics_bp)
        app.register_blueprint(clients_bp)
        # `flask realtime ...` (realtime_flask.web.commands); the standalone service has it too.
        app.cli.add_command(realtime_group())

    def broadcast(
        self,
        collection: str,
        action: str,
        record: t.Mapping[str, object],
        *,
        collection_id: str = "",
        unfiltered: bool = False,
        app: Flask | None = None,
    ) -> Event:
        """Send ``{"record", "action"}`` to every client subscribed to the record.

        For a collection of the standalone service's record store, the
        collection's listRule/viewRule decide who gets it, evaluated on
        ``record`` as for a write through the API (hidden fields are not
        shown); ``unfiltered=True`` sends it to every subscriber as published.

        Reaches ``collection/*``, ``collection/<record["id"]>`` and the bare
        ``collection`` topic (and the same with ``collection_id``), one frame
        per matching subscription, the event name being the topic exactly as
        the client sent it.  Returns the published event: with its id from
        the in-process broker; under Redis the id (a stream id) is assigned
        when the event reaches the log and the fan-out happens on each
        worker's listener.
        Raises InvalidEvent for a bad collection, action or record.
        """
        state = get_state(app)
        return state.publish(
            Event(collection, action, record, collection_id=collection_id, unfiltered=unfiltered)
        )

    def send(self, topic: str, data: object, *, app: Flask | None = None) -> TopicMessage:
        """Send a custom message: ``data`` to every client subscribed to ``topic``.

        PocketBase's custom messages (``subscriptions.Message`` sent by app
        code to the clients with that subscription).  ``topic`` is any text a
        client may subscribe to, a collection's name or not (``chat-room-1``,
        ``orders/42``); ``data`` any JSON value.  Each subscription whose topic,
        without ``?options=``, equals ``topic`` gets one frame: the event name
        is the topic exactly as that client subscribed it, the data one line of
        compact JSON, so the SDK's ``pb.realtime.subscribe(topic, cb)`` calls
        ``cb(data)`` (the SDK passes ``{}`` for a falsy value: ``null``,
        ``false``, ``0``, ``""``).  The ``topic_authorizer`` given to
        ``Realtime`` decides who receives it (default: everyone subscribed).

        It takes the record events' path: an id from the broker, every worker
        under Redis, and a replay on ``Last-Event-ID`` resume.  Returns the
        published message (its id as for ``broadcast``).
        Raises InvalidEvent for a topic that is empty, holds ``"?"`` or a
        control character, is longer than 2500 UTF-8 bytes or is
        ``PB_CONNECT``/``RF_RESET``, and for data that is not JSON-serialisable.
        """
        state = get_state(app)
        return state.publish(TopicMessage(topic, data))

    def state(self, app: Flask | None = None) -> RealtimeState:
        return get_state(app)


def build_broker(settings: Settings) -> Broker:
    """The broker ``settings`` ask for, not started: a RedisBroker on
    ``REALTIME_REDIS_URL``, else a MemoryBroker (delivering from a greenlet of
    its own under gevent, so writes return before the fan-out; synchronously
    otherwise).  Raises BrokerUnavailable when the Redis extra is missing."""
    if settings.redis_url:
        from realtime_flask.cluster.broker import RedisBroker

        return RedisBroker(
            settings.redis_url,
            history_size=settings.history_size,
            outbox_size=settings.outbox_size,
        )
    spawn = None
    if runtime.gevent_active():
        spawn = _delivery_spawn
    return MemoryBroker(history_size=settings.history_size, spawn=spawn)


_T = t.TypeVar("_T")


def _first(given: _T | None, default: _T | None) -> _T | None:
    """The argument of ``init_app`` when given, else the constructor's."""
    return given if given is not None else default


def _delivery_spawn(target: t.Callable[[], None]) -> object:
    return runtime.spawn_daemon(target, "realtime-delivery")


def _build_router(settings: Settings, manager: RealtimeManager) -> Router:
    if settings.redis_url:
        from realtime_flask.cluster.router import RedisRouter

        return RedisRouter(
            settings.redis_url,
            manager,
            ttl=settings.registry_ttl,
            grace=settings.resume_grace,
        )
    return LocalRouter(manager, grace=settings.resume_grace)


def _open_visibility() -> Visibility:
    from realtime_flask.engine.access import OpenVisibility

    return OpenVisibility()
