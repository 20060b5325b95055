"""The Flask extension: ``Realtime(app)`` / ``init_app`` and ``broadcast``.

Rule: the extension object is app-agnostic; per-app state (settings, manager,
broker, reaper) lives in ``app.extensions["realtime"]`` and views reach it
through ``current_app``.
"""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass
from dataclasses import replace

from flask import Flask
from flask import Request
from flask import current_app

from realtime_flask import runtime
from realtime_flask.config import Settings
from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.events import event_position
from realtime_flask.engine.broker import Broker
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.engine.manager import DispatchResult
from realtime_flask.engine.manager import RealtimeClient
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.manager import Reaper
from realtime_flask.engine.router import LocalRouter
from realtime_flask.engine.router import Router
from realtime_flask.errors import RealtimeError

if t.TYPE_CHECKING:
    from realtime_flask.engine.access import EventView
    from realtime_flask.engine.access import Visibility

#: The SSE event sent when a client may have missed events (Redis outage past
#: the outbox, or history that no longer reaches back): refetch, then go on.
RESET_EVENT = "RF_RESET"

__all__ = ["AuthResolver", "Realtime", "RealtimeState", "get_state"]

#: Turns a request into the auth record it carries (None = guest).
AuthResolver = t.Callable[[Request], AuthUser | None]

EXTENSION_KEY = "realtime"

logger = logging.getLogger(__name__)


def _guest(request: Request) -> AuthUser | None:
    return None


@dataclass(slots=True)
class RealtimeState:
    """Everything one app's realtime needs, built once by ``init_app``."""

    settings: Settings
    manager: RealtimeManager
    broker: Broker
    reaper: Reaper | None
    auth_resolver: AuthResolver
    visibility: Visibility | None = None
    router: Router | None = None
    #: Id of the newest event handed to the manager (set before its fan-out).
    last_delivered: str = ""
    #: Re-reads a resumed client's auth record: the fresh AuthUser, or None when
    #: it is gone or its tokenKey rotated (the client resumes as a guest).
    auth_refresher: t.Callable[[AuthUser], AuthUser | None] | None = None

    def publish(self, event: Event) -> Event:
        return self.broker.publish(event)

    def deliver_many(self, events: list[Event]) -> DispatchResult:
        """The broker's batch handler: ``deliver`` for a run of events, with one
        fan-out pass (one write per client) for each stretch of events that
        change no connected client's auth; events that may are delivered alone,
        so auth side effects keep their place in the order."""
        total = DispatchResult(0, 0, 0)
        run: list[Event] = []
        for event in events:
            if _may_change_auth(event):
                total += self._deliver_run(run)
                run = []
                total += self.deliver(event)
            else:
                run.append(event)
        return total + self._deliver_run(run)

    def _deliver_run(self, run: list[Event]) -> DispatchResult:
        if not run:
            return DispatchResult(0, 0, 0)
        # Set first: a client resumed during this fan-out replays these events.
        self.last_delivered = run[-1].id
        items: list[tuple[Event, EventView | None]] = []
        for event in run:
            try:
                view = None if self.visibility is None else self.visibility.begin(event)
            except Exception:  # one event's failure must not cost the others
                logger.exception("realtime visibility failed for event %s", event.id)
                continue
            items.append((event, view))
        return self.manager.dispatch_many(items)

    def deliver(self, event: Event) -> DispatchResult:
        """The broker's handler: auth side effects, then the rule-filtered fan-out."""
        # Set first: a client resumed during this fan-out replays this event.
        self.last_delivered = event.id
        view = None if self.visibility is None else self.visibility.begin(event)
        if event.action == "delete":
            # PocketBase checks a delete before it happens, so the owner of a
            # deleted auth record still gets that record's delete frame.
            result = self.manager.dispatch(event, view)
            self.manager.apply_auth_change(event)
            return result
        self.manager.apply_auth_change(event)
        return self.manager.dispatch(event, view)

    def open_client(self, remote_addr: str | None, last_event_id: str = "") -> RealtimeClient:
        """Register the client of a new stream, resuming a parked one when asked.

        ``last_event_id`` is ``<clientId>.<event id>`` as our frames carry it.  A
        client parked within the grace period from the same address comes back
        with its id, topics and auth, and its queue starts with the events it
        missed since that id (filtered by its rules, in order, no duplicates;
        an ``RF_RESET`` frame instead when the history no longer reaches back);
        anything else gets a fresh client.
        """
        client_id, _, position = last_event_id.rpartition(".")
        parked = None
        if client_id and position and client_id.isalnum():
            parked = self.routing.take_parked(client_id, remote_addr)
        if parked is None:
            return self.manager.register_client(remote_addr=remote_addr)
        if parked.user is not None and self.auth_refresher is not None:
            parked = replace(parked, user=self.auth_refresher(parked.user))
        # Events up to here are replayed, later ones come live.  A worker that
        # has delivered nothing yet replays up to where its listener started.
        upto = self.last_delivered or str(self.broker.status().get("lastId", ""))
        try:
            client = self.manager.register_client(remote_addr=remote_addr, resume=parked)
        except RealtimeError:
            return self.manager.register_client(remote_addr=remote_addr)
        self._replay(client, position, upto)
        return client

    def _replay(self, client: RealtimeClient, after: str, upto: str) -> None:
        frames: list[bytes] = []
        complete = bool(upto) and self._collect(client, after, upto, frames)
        if not complete or len(frames) > self.manager.queue_size:
            reset = sse.format_event_body(RESET_EVENT, {"reason": "history_lost"})
            frames = [client.id_line + reset]
        client.controller.put_front(frames)

    def _collect(self, client: RealtimeClient, after: str, upto: str, out: list[bytes]) -> bool:
        """Frames of the events in (after, upto]; False if history does not cover it."""
        limit = event_position(upto)
        if event_position(after) >= limit:
            return True
        page = 500
        for _ in range(10_000):  # bounded: history_size / page pages at most
            try:
                history = self.broker.history(after, page)
            except RealtimeError:
                return False
            if history is None:
                return False
            for event in history:
                if event_position(event.id) > limit:
                    return True
                view = None if self.visibility is None else self.visibility.begin(event)
                out.extend(self.manager.render(client, event, view))
                if len(out) > self.manager.queue_size:
                    return True  # too far behind: the caller sends a reset
                after = event.id
            if event_position(after) >= limit:
                return True
            if len(history) < page:
                return False  # the log ends before `upto`: it was lost
            self.manager.pause()
        return False

    @property
    def routing(self) -> Router:
        """Where subscription POSTs are applied (this process unless scaled out)."""
        if self.router is None:
            self.router = LocalRouter(self.manager)
        return self.router

    def reset(self, reason: str) -> int:
        """Tell every client that events may have been lost (``RF_RESET``): refetch."""
        return self.manager.send_to_all(RESET_EVENT, {"reason": reason})

    def shutdown(self) -> int:
        """Stop the reaper and close every stream cleanly; returns streams closed."""
        if self.reaper is not None:
            self.reaper.stop()
        closed = self.manager.close_all()
        if self.router is not None:
            self.router.close()
        self.broker.close()
        return closed


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

    :param app: initialise at once for this app (else call ``init_app``).
    :param broker: the event broker; a process-local MemoryBroker by default.
    :param auth_resolver: maps a request to its AuthUser (None = guest); every
        request is a guest by default.
    :param visibility: who sees which event (``realtime_flask.engine.access``), e.g.
        ``PythonRules({...})``; by default every subscriber sees every event.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        broker: Broker | None = None,
        auth_resolver: AuthResolver | None = None,
        visibility: Visibility | None = None,
    ) -> None:
        self._broker = broker
        self._auth_resolver = auth_resolver
        self._visibility = visibility
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        from realtime_flask.web.api.realtime import bp  # the api layer sits above the extension

        settings = Settings.from_mapping(app.config)
        manager = RealtimeManager(
            queue_size=settings.queue_size,
            idle_timeout=settings.idle_timeout,
            max_lifetime=settings.max_lifetime,
        )
        broker: Broker
        router: Router
        if self._broker is not None:
            broker = self._broker
        elif settings.redis_url:
            from realtime_flask.cluster.broker import RedisBroker

            broker = RedisBroker(
                settings.redis_url,
                history_size=settings.history_size,
                outbox_size=settings.outbox_size,
            )
        else:
            broker = MemoryBroker(history_size=settings.history_size, spawn=_delivery_spawn())
        if settings.redis_url:
            from realtime_flask.cluster.router import RedisRouter

            router = RedisRouter(
                settings.redis_url,
                manager,
                ttl=settings.registry_ttl,
                grace=settings.resume_grace,
            )
        else:
            router = LocalRouter(manager, grace=settings.resume_grace)
        reaper = Reaper(manager, settings.reaper_interval) if settings.reaper_enabled else None
        state = RealtimeState(
            settings=settings,
            manager=manager,
            broker=broker,
            reaper=reaper,
            auth_resolver=self._auth_resolver or _guest,
            visibility=self._visibility or _open_visibility(),
            router=router,
        )
        subscribe_many = getattr(broker, "subscribe_many", None)
        if subscribe_many is not None:
            subscribe_many(state.deliver_many)
        else:  # a broker of the app's own making
            broker.subscribe(state.deliver)
        broker.subscribe_reset(state.reset)
        broker.start()
        router.start()
        app.extensions[EXTENSION_KEY] = state
        app.register_blueprint(bp)
        if reaper is not None:
            reaper.start()

    def broadcast(
        self,
        collection: str,
        action: str,
        record: t.Mapping[str, object],
        *,
        collection_id: str = "",
        app: Flask | None = None,
    ) -> Event:
        """Send ``{"record", "action"}`` to every client subscribed to the record.

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
        return state.publish(Event(collection, action, record, collection_id=collection_id))

    def state(self, app: Flask | None = None) -> RealtimeState:
        return get_state(app)


def _delivery_spawn() -> t.Callable[[t.Callable[[], None]], object] | None:
    """Under gevent, deliver from a greenlet of its own (writes return before the
    fan-out); otherwise synchronously (tests, threaded servers)."""
    if not runtime.gevent_active():
        return None
    return lambda target: runtime.spawn_daemon(target, "realtime-delivery")


def _may_change_auth(event: Event) -> bool:
    """Whether ``RealtimeManager.apply_auth_change`` may act on ``event``."""
    stored = event.stored
    return stored is not None and event.action != "create" and "tokenKey" in stored


def _open_visibility() -> Visibility:
    from realtime_flask.engine.access import OpenVisibility

    return OpenVisibility()


def get_state(app: Flask | None = None) -> RealtimeState:
    """The realtime state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    try:
        return t.cast(RealtimeState, target.extensions[EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            "realtime_flask is not initialised on this app; call Realtime(app) or init_app(app)"
        ) from None
