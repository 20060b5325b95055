"""Rule-filtered realtime fan-out: dispatch time per event vs subscribed clients.

    .venv/bin/python bench/dispatch_rules.py [--events 200]

For N subscribed clients (1,000 and 5,000), each authenticated as its own user,
all subscribed to ``posts/*``, one record change is dispatched through the
real store-backed visibility and the manager; frames land in the clients'
queues (drained between events).  Rows:

* ``open``: no rules (the extension without a store): the baseline;
* ``auth-rule``: listRule ``owner = @request.auth.id``, N distinct users: one
  rule evaluation per distinct auth per event;
* ``auth-rule, 50 users``: the same N clients shared by 50 users: evaluations
  are cached per (rule, auth), so the cost tracks distinct auths.

Times are the median per event over ``--events`` events, after 20 warm-ups.
"""

from __future__ import annotations

import argparse
import statistics
import time

from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.rules import RequestContext
from realtime_flask.core.schema import Schema
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.access import OpenVisibility
from realtime_flask.engine.access import Visibility
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.store.auth import Passwords
from realtime_flask.store.records import RecordStore
from realtime_flask.store.visibility import StoreVisibility

SCHEMA = [
    {
        "name": "users",
        "type": "auth",
        "fields": [{"name": "name", "type": "text"}],
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
    },
    {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": "users"},
        ],
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
    },
]


def measure(clients: int, users: int, visibility: str, events: int) -> float:
    store = RecordStore(Schema.from_json(SCHEMA), ":memory:", passwords=Passwords(n=2**4))
    su = RequestContext(auth=None, superuser=True)
    user_records = [
        store.create(
            "users",
            {
                "email": f"u{i}@example.com",
                "password": "password123",
                "passwordConfirm": "password123",
            },
            su,
        )
        for i in range(users)
    ]
    coll = store.collection("users")
    manager = RealtimeManager(queue_size=events + 100)
    topic = [parse_topic("posts/*")]
    for i in range(clients):
        rec = user_records[i % users]
        c = manager.register_client()
        manager.subscribe(c.id, topic, AuthUser(coll.id, rec["id"], "users", rec))
    view: Visibility = OpenVisibility() if visibility == "open" else StoreVisibility(store)
    owner = user_records[0]["id"]
    post = store.create("posts", {"title": "hello", "owner": owner}, su)
    posts = store.collection("posts")
    samples: list[float] = []
    for n in range(events + 20):
        event = Event(
            "posts", "update", store.public_record(posts, post), collection_id=posts.id, stored=post
        )
        started = time.perf_counter()
        manager.dispatch(event, view.begin(event))
        elapsed = time.perf_counter() - started
        if n >= 20:
            samples.append(elapsed)
        for cid in manager.client_ids():
            client = manager.get_client(cid)
            if client is not None:
                client.controller.get(timeout=0)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    print("| clients | visibility | distinct users | ms / event | vs open |")
    print("|---:|---|---:|---:|---:|")
    for clients in (1000, 5000):
        base = measure(clients, clients, "open", args.events)
        rows = [
            ("open", clients, base),
            ("auth-rule", clients, measure(clients, clients, "rules", args.events)),
            ("auth-rule", 50, measure(clients, 50, "rules", args.events)),
        ]
        for name, users, seconds in rows:
            print(
                f"| {clients} | {name} | {users} | {seconds * 1000:.2f} | {seconds / base:.2f}x |"
            )


if __name__ == "__main__":
    main()
