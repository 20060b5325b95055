"""realtime_flask inside your own Flask app, with access rules declared in Python.

Run it (it monkey-patches first, as every gevent entry point must)::

    .venv/bin/python examples/extension_app.py          # serves on 127.0.0.1:8091

then, in two other terminals::

    curl -N http://127.0.0.1:8091/api/realtime                     # note the clientId
    curl -X POST http://127.0.0.1:8091/api/realtime -H 'Content-Type: application/json' \
         -H 'Authorization: alice' -d '{"clientId":"<id>","subscriptions":["notes/*"]}'
    curl -X POST http://127.0.0.1:8091/notes -H 'Authorization: alice' \
         -H 'Content-Type: application/json' -d '{"text":"hi"}'

Alice's stream shows her note; a stream subscribed as bob (or as a guest) does not.
The app owns its data (a dict here, your ORM in real life) and its login (a
header naming the user here, your session or token check in real life); it
tells realtime_flask who the requester is (``auth_resolver``) and which
records each subscriber may see (``PythonRules``), then calls ``broadcast``.

Chat rooms are custom topics (not collections): subscribe to ``rooms/lobby``
(the SDK: ``pb.realtime.subscribe("rooms/lobby", cb)``) and post to it::

    curl -X POST http://127.0.0.1:8091/rooms/lobby/messages -H 'Authorization: bob' \
         -H 'Content-Type: application/json' -d '{"text":"hello"}'

The route calls ``realtime.send``; ``may_receive`` (the ``topic_authorizer``)
keeps ``rooms/staff`` to its members, every other room is open to everyone.
"""

from __future__ import annotations

import itertools
import typing as t

from flask import Flask
from flask import Request
from flask import abort
from flask import request

from realtime_flask import AuthUser
from realtime_flask import Realtime
from realtime_flask.engine.access import PythonRules

USERS = {"alice", "bob"}
#: Rooms with a member list; every other room is public.
ROOM_MEMBERS = {"staff": {"alice"}}


def current_user(req: Request) -> AuthUser | None:
    """Your auth goes here; this demo trusts a header naming the user."""
    name = req.headers.get("Authorization", "")
    if name not in USERS:
        return None
    return AuthUser(collection_id="users", id=name, collection_name="users", record={"id": name})


rules = PythonRules(
    {
        # only the owner sees a note: a PocketBase rule string over the record's keys
        "notes": {"list": "owner = @request.auth.id", "view": "owner = @request.auth.id"},
        # announcements are public
        "announcements": {"list": "", "view": ""},
        # audit entries: superusers only (None), as a null rule in PocketBase
        "audit": {"list": None, "view": None},
    }
)


def may_receive(auth: AuthUser | None, topic: str) -> bool:
    """Who receives a custom message: asked per message, so leaving a room counts at once."""
    room = topic.removeprefix("rooms/")
    members = ROOM_MEMBERS.get(room)
    return members is None or (auth is not None and auth.id in members)


realtime = Realtime(auth_resolver=current_user, visibility=rules, topic_authorizer=may_receive)


def create_app(config: t.Mapping[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config or {})
    realtime.init_app(app)
    notes: dict[str, dict[str, object]] = {}
    ids = itertools.count(1)

    @app.post("/notes")
    def create_note() -> tuple[dict[str, object], int]:
        user = current_user(request)
        if user is None:
            abort(401)
        body = request.get_json(silent=True) or {}
        note_id = f"note{next(ids):011d}"
        note: dict[str, object] = {
            "id": note_id,
            "owner": user.id,
            "text": str(body.get("text", "")),
        }
        notes[note_id] = note
        realtime.broadcast("notes", "create", note)  # after the write is committed
        return note, 200

    @app.delete("/notes/<note_id>")
    def delete_note(note_id: str) -> tuple[str, int]:
        user = current_user(request)
        note = notes.get(note_id)
        if user is None or note is None or note["owner"] != user.id:
            abort(404)
        del notes[note_id]
        realtime.broadcast("notes", "delete", note)
        return "", 204

    @app.post("/rooms/<room>/messages")
    def post_message(room: str) -> tuple[dict[str, object], int]:
        user = current_user(request)
        if user is None:
            abort(401)
        body = request.get_json(silent=True) or {}
        message: dict[str, object] = {
            "room": room,
            "from": user.id,
            "text": str(body.get("text", "")),
        }
        # a custom message: everyone subscribed to rooms/<room> whom may_receive admits
        realtime.send(f"rooms/{room}", message)
        return message, 200

    return app


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    from realtime_flask.server.serve import serve

    serve(create_app(), "127.0.0.1", 8091)
