"""A user's own Flask app with ``Realtime(app)``, served by ``gunicorn -k gevent`` in
tests/e2e/test_custom_topics.py: its route sends chat messages with ``realtime.send``.

Settings come from the ``REALTIME_*`` environment (the test's private Redis), as
the standalone service takes them.  Login is a header naming the user (the SDK
sends ``pb.authStore.token`` as ``Authorization``); ``rooms/staff`` is kept to
its members by the topic authorizer, every other room is open.  ``/api/health``
answers like the standalone service's, so the test harness (start-up check,
pinned connections) works unchanged.  The library never monkey-patches; the
gevent worker already has.
"""

from __future__ import annotations

from flask import Flask
from flask import Request
from flask import abort
from flask import request

from realtime_flask import AuthUser
from realtime_flask import Realtime
from realtime_flask.config import env_overrides
from realtime_flask.web.extension import get_state

STAFF = frozenset({"alice"})


def user_of(req: Request) -> AuthUser | None:
    name = req.headers.get("Authorization", "")
    if not name.isalnum():
        return None
    return AuthUser("users", name, "users", {"id": name})


def may_receive(auth: AuthUser | None, topic: str) -> bool:
    if topic != "rooms/staff":
        return True
    return auth is not None and auth.id in STAFF


realtime = Realtime(auth_resolver=user_of, topic_authorizer=may_receive)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(env_overrides())
    realtime.init_app(app)

    @app.post("/rooms/<room>/messages")
    def post_message(room: str) -> tuple[dict[str, object], int]:
        user = user_of(request)
        if user is None:
            abort(401)
        body = request.get_json()
        message = realtime.send(f"rooms/{room}", {"from": user.id, "text": body["text"]})
        return {"id": message.id}, 200

    @app.get("/api/health")
    def health() -> dict[str, object]:
        state = get_state(app)
        status = {**state.broker.status(), **state.routing.status()}
        return {"code": 200, "message": "API is healthy.", "data": {"realtime": status}}

    return app


app = create_app()
