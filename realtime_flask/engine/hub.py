"""The per-process hub: one app's manager, broker, router, visibility and auth hooks.

``RealtimeState`` is what an event goes through between the broker and the
clients' queues (``deliver_many``), what a new stream registers with
(``open_client``, resuming a parked client) and what a shutdown closes.  It
knows no web framework: the web layer builds its parts (a Redis broker and
router included) and passes them in, once; nothing is patched in afterwards.

Rules:

1. Every part is given at construction; the hub only tracks ``last_delivered``
   (the newest event handed to the manager, for resumes).
2. ``start`` wires the hub to its broker (batch handler, reset handler) and
   starts the broker, the router and the reaper; ``shutdown`` undoes it.
3. No Flask, redis or sqlite3 here: the hub imports engine, core, runtime,
   config and errors only.
"""

from __future__ import annotations

import logging
import random
import time
import typing as t
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace

from realtime_flask.config import Settings
from realtime_flask.core import sse
from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Published
from realtime_flask.core.events import TopicMessage
from realtime_flask.core.events import event_position
from realtime_flask.engine.access import TopicAuthorizer
from realtime_flask.engine.access import TopicMessageView
from realtime_flask.engine.broker import Broker
from realtime_flask.engine.broker import P
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

__all__ = [
    "RESET_EVENT",
    "AuthRefresher",
    "AuthResolver",
    "DispatchHook",
    "RealtimeState",
    "may_change_auth",
]

logger = logging.getLogger(__name__)

#: The SSE event sent when a client may have missed events (Redis outage past
#: the outbox, or history that no longer reaches back): refetch, then go on.
RESET_EVENT = "RF_RESET"

#: Turns a request (whatever the web layer hands over) into the auth record it
#: carries (None = guest).
AuthResolver = t.Callable[[t.Any], AuthUser | None]
#: Told about each fan-out pass: (events, what was queued, seconds it took).
DispatchHook = t.Callable[[int, DispatchResult, float], object]
#: Re-reads a resumed client's auth record: the fresh AuthUser, or None when it
#: is gone or its tokenKey rotated (the client resumes as a guest).
AuthRefresher = t.Callable[[AuthUser], AuthUser | None]


@dataclass(slots=True)
class RealtimeState:
    """Everything one app's realtime needs in one process, built once.

    :param settings: the validated ``REALTIME_*`` settings.
    :param manager: the clients of this process.
    :param broker: where events are published and delivered from.
    :param reaper: the idle reaper (None when ``REALTIME_REAPER_ENABLED`` is off).
    :param auth_resolver: maps a subscriptions request to its AuthUser.
    :param visibility: who sees which event; None shows every event as published.
    :param router: where subscription POSTs are applied (a LocalRouter when None).
    :param auth_refresher: re-reads a resumed client's auth (None keeps it as parked).
    :param topic_authorizer: who may receive which custom message (see
        ``engine.access.TopicAuthorizer``); None: every subscriber of the topic.
    """

    settings: Settings
    manager: RealtimeManager
    broker: Broker
    reaper: Reaper | None
    auth_resolver: AuthResolver
    visibility: Visibility | None = None
    router: Router | None = None
    #: Id of the newest event handed to the manager (set before its fan-out).
    last_delivered: str = ""
    auth_refresher: AuthRefresher | None = None
    #: True from ``drain`` on: streams are closed and new ones are turned away.
    draining: bool = False
    #: True from ``close`` on: events can no longer be published.
    closed: bool = False
    topic_authorizer: TopicAuthorizer | None = None
    #: Called after each fan-out pass of the broker's handler with the events
    #: it took, what it queued and the seconds it ran (metrics); never per client.
    on_dispatch: DispatchHook | None = None

    def start(self) -> None:
        """Subscribe to the broker (batches when it offers them) and its resets,
        then start the broker, the router and the reaper.

        Raises what the broker's or the router's ``start`` raises (e.g.
        BrokerUnavailable under gevent with unpatched sockets).
        """
        subscribe_many = getattr(self.broker, "subscribe_many", None)
        if subscribe_many is not None:
            subscribe_many(self.deliver_many)
        else:  # a broker of the app's own making
            self.broker.subscribe(self.deliver)
        self.broker.subscribe_reset(self.reset)
        self.broker.start()
        self.routing.start()
        if self.reaper is not None:
            self.reaper.start()

    def publish(self, event: P) -> P:
        """Hand ``event`` (a record Event or a TopicMessage) to the broker; returns
        it with its id (see ``Broker.publish``)."""
        return self.broker.publish(event)

    def view_of(self, event: Published) -> EventView | None:
        """Who sees ``event`` and what: the visibility's view of a record event, the
        topic authorizer's of a custom message (None: everyone, as published)."""
        if isinstance(event, TopicMessage):
            if self.topic_authorizer is None:
                return None
            return TopicMessageView(event, self.topic_authorizer)
        return None if self.visibility is None else self.visibility.begin(event)

    def deliver_many(self, events: Sequence[Published]) -> DispatchResult:
        """The broker's batch handler: ``deliver`` for a run of events, with one
        fan-out pass (one write per client) for each stretch of events that
        change no connected client's auth; events that may are delivered alone,
        so auth side effects keep their place in the order."""
        if self.on_dispatch is None:
            return self._deliver_many(events)
        started = time.perf_counter()
        total = self._deliver_many(events)
        self.on_dispatch(len(events), total, time.perf_counter() - started)
        return total

    def _deliver_many(self, events: Sequence[Published]) -> DispatchResult:
        total = DispatchResult(0, 0, 0)
        run: list[Published] = []
        for event in events:
            if may_change_auth(event):
                total += self._deliver_run(run)
                run = []
                total += self.deliver(event)
            else:
                run.append(event)
        return total + self._deliver_run(run)

    def _deliver_run(self, run: list[Published]) -> DispatchResult:
        if not run:
            return DispatchResult(0, 0, 0)
        # Set first: a client resumed during this fan-out replays these events.
        self.last_delivered = run[-1].id
        items: list[tuple[Published, EventView | None]] = []
        for event in run:
            try:
                view = self.view_of(event)
            except Exception:  # one event's failure must not cost the others
                logger.exception("realtime visibility failed for event %s", event.id)
                continue
            items.append((event, view))
        return self.manager.dispatch_many(items)

    def deliver(self, event: Published) -> DispatchResult:
        """The broker's handler: auth side effects, then the rule-filtered fan-out."""
        # Set first: a client resumed during this fan-out replays this event.
        self.last_delivered = event.id
        view = self.view_of(event)
        if isinstance(event, TopicMessage):
            return self.manager.dispatch(event, view)
        if event.action == "delete":
            # PocketBase checks a delete before it happens, so the owner of a
            # deleted auth record still gets that record's delete frame.
            result = self.manager.dispatch(event, view)
            self.manager.apply_auth_change(event)
            return result
        self.manager.apply_auth_change(event)
        return self.manager.dispatch(event, view)

    def open_fresh_client(self, remote_addr: str | None, reset_reason: str) -> RealtimeClient:
        """A fresh client whose queue starts with ``RF_RESET`` (``reset_reason``): for
        a resume that cannot be honoured safely (its address cannot be trusted)."""
        client = self.manager.register_client(remote_addr=remote_addr)
        client.since = self._position()
        client.controller.put_front([_reset_frame(client, reset_reason)])
        return client

    def _position(self) -> str:
        """The log position of the newest event this process has handed out; before
        its first, where its listener started."""
        return self.last_delivered or str(self.broker.status().get("lastId", ""))

    def open_client(self, remote_addr: str | None, last_event_id: str = "") -> RealtimeClient:
        """Register the client of a new stream, resuming a parked one when asked.

        ``last_event_id`` is ``<clientId>.<event id>`` as our frames carry it, or
        the bare ``<clientId>`` of PB_CONNECT when the client has had no event
        since (then it resumes from where its stream started,
        ``RealtimeClient.since``).  A client parked within the grace period
        from the same address comes back with its id, topics and auth, and its
        queue starts with the events it missed since that position (filtered
        by its rules, in order, no duplicates; an ``RF_RESET`` frame instead
        when the history no longer reaches back); anything else gets a fresh
        client.
        """
        client_id, dot, position = last_event_id.rpartition(".")
        if not dot:  # the bare client id
            client_id, position = last_event_id, ""
        parked = None
        if client_id and client_id.isalnum() and (position or not dot):
            parked = self.routing.take_parked(client_id, remote_addr)  # may wait (Redis)
        if parked is not None and parked.user is not None and self.auth_refresher is not None:
            parked = replace(parked, user=self.auth_refresher(parked.user))  # may wait (SQLite)
        # No wait from here to the registration: events up to ``upto`` are
        # replayed, later ones reach the registered client live.  A worker that
        # has delivered nothing yet replays up to where its listener started.
        upto = self._position()
        if parked is not None:
            try:
                client = self.manager.register_client(remote_addr=remote_addr, resume=parked)
            except RealtimeError:  # its id is live again: a fresh client
                parked = None
        if parked is None:
            client = self.manager.register_client(remote_addr=remote_addr)
            client.since = upto
            return client
        after = position if dot else parked.since
        # The replayed frames are only queued: a stream dropped before the client
        # read any of them leaves it with the bare id again, and it must get them
        # again.  So this stream starts where the replay starts.
        client.since = after
        if after != upto:  # a bare id with nothing since needs no replay, nor a reset
            self._replay(client, after, upto)
        return client

    def _replay(self, client: RealtimeClient, after: str, upto: str) -> None:
        frames: list[bytes] = []
        complete = bool(upto) and self._collect(client, after, upto, frames)
        if not complete or len(frames) > self.manager.queue_size:
            frames = [_reset_frame(client, "history_lost")]
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
                view = self.view_of(event)
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

    def drain(self) -> int:
        """First step of a graceful stop: stop the reaper, close every stream (each
        is parked for its resume elsewhere) and turn new streams away; the
        broker stays open, so writes still being served publish their events.
        Returns the streams closed."""
        self.draining = True
        if self.reaper is not None:
            self.reaper.stop()
        return self.manager.close_all()

    def close(self) -> None:
        """Last step, once no request is left: stop the router, flush the
        broker's outbox and close it.  A write after this answers 503
        (``accepting_writes``)."""
        self.closed = True
        self.draining = True
        if self.router is not None:
            self.router.close()
        self.broker.close()

    @property
    def accepting_writes(self) -> bool:
        """Whether a write's event can still be published (False after ``close``)."""
        return not self.closed

    def shutdown(self) -> int:
        """``drain`` then ``close``, for a process with no request left in flight;
        returns the streams closed."""
        closed = self.drain()
        self.close()
        return closed


#: The shortest ``retry:`` a drained stream gets (milliseconds).
MIN_DRAIN_RETRY_MS: t.Final = 250


def drain_retry_ms(window: float, rng: random.Random | None = None) -> int:
    """A reconnection delay for one stream closed by a drain: uniform over the
    window (seconds), so clients come back spread out rather than all at once.

    Returns milliseconds, at least ``MIN_DRAIN_RETRY_MS``.
    """
    top = max(MIN_DRAIN_RETRY_MS, int(window * 1000))
    return (rng or random).randint(MIN_DRAIN_RETRY_MS, top)


def _reset_frame(client: RealtimeClient, reason: str) -> bytes:
    """An ``RF_RESET`` frame for ``client``: events may be lost, refetch."""
    return client.id_line + sse.format_event_body(RESET_EVENT, {"reason": reason})


def may_change_auth(event: Published) -> bool:
    """Whether ``RealtimeManager.apply_auth_change`` may act on ``event``."""
    if isinstance(event, TopicMessage):
        return False
    stored = event.stored
    return stored is not None and event.action != "create" and "tokenKey" in stored
