"""The Flask extension: ``Realtime(app)`` / ``init_app`` and ``broadcast``.

Rule: the extension object is app-agnostic; per-app state (settings, manager,
broker, reaper) lives in ``app.extensions["realtime"]`` and views reach it
through ``current_app``.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from flask import Flask
from flask import Request
from flask import current_app

from .broker import Broker
from .broker import MemoryBroker
from .config import Settings
from .events import AuthUser
from .events import Event
from .manager import DispatchResult
from .manager import RealtimeManager
from .manager import Reaper

if t.TYPE_CHECKING:
    from .access import Visibility

__all__ = ["AuthResolver", "Realtime", "RealtimeState", "get_state"]

#: Turns a request into the auth record it carries (None = guest).
AuthResolver = t.Callable[[Request], AuthUser | None]

EXTENSION_KEY = "realtime"


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

    def publish(self, event: Event) -> Event:
        return self.broker.publish(event)

    def deliver(self, event: Event) -> DispatchResult:
        """The broker's handler: auth side effects, then the rule-filtered fan-out."""
        view = None if self.visibility is None else self.visibility.begin(event)
        if event.action == "delete":
            # PocketBase checks a delete before it happens, so the owner of a
            # deleted auth record still gets that record's delete frame.
            result = self.manager.dispatch(event, view)
            self.manager.apply_auth_change(event)
            return result
        self.manager.apply_auth_change(event)
        return self.manager.dispatch(event, view)

    def shutdown(self) -> int:
        """Stop the reaper and close every stream cleanly; returns streams closed."""
        if self.reaper is not None:
            self.reaper.stop()
        return self.manager.close_all()


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
    :param visibility: who sees which event (``realtime_flask.access``), e.g.
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
        from .api.realtime import bp  # the api layer sits above the extension

        settings = Settings.from_mapping(app.config)
        manager = RealtimeManager(
            queue_size=settings.queue_size,
            idle_timeout=settings.idle_timeout,
            max_lifetime=settings.max_lifetime,
        )
        broker = self._broker if self._broker is not None else MemoryBroker()
        reaper = Reaper(manager, settings.reaper_interval) if settings.reaper_enabled else None
        state = RealtimeState(
            settings=settings,
            manager=manager,
            broker=broker,
            reaper=reaper,
            auth_resolver=self._auth_resolver or _guest,
            visibility=self._visibility or _open_visibility(),
        )
        broker.subscribe(state.deliver)
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
        the client sent it.  Returns the published event (with its id).
        Raises InvalidEvent for a bad collection, action or record.
        """
        state = get_state(app)
        return state.publish(Event(collection, action, record, collection_id=collection_id))

    def state(self, app: Flask | None = None) -> RealtimeState:
        return get_state(app)


def _open_visibility() -> Visibility:
    from .access import OpenVisibility

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
