"""Custom topics end to end (issue #11): the official SDK in Node subscribes to
``chat-room-1`` on a ``gunicorn -k gevent -w 4`` server sharing a private Redis,
and gets exactly the messages ``POST /api/realtime/publish`` sent on a
connection pinned to another worker than the one holding the SDK's stream;
a second listener, subscribed with options (``chat-room-1?options=...``), gets
them too.

Which worker holds the stream comes from the router's registry (client id ->
node id, whose PID is checked against the gunicorn master's children); which
worker takes the publish, from the pinned keep-alive connection's
``/api/health`` (see tests/e2e/test_redis_cluster.py).  The Node script and
this test talk over one loopback TCP connection: Node sends its client id, the
test publishes and answers with what it sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import typing as t
from collections.abc import Iterator

import pytest

from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import post_subscriptions
from realtime_flask.testing import request_json
from tests.e2e.test_redis_cluster import KEEP_ALIVE_ARGS
from tests.e2e.test_redis_cluster import WORKERS
from tests.e2e.test_redis_cluster import Pinned
from tests.e2e.test_redis_cluster import Registry
from tests.e2e.test_redis_cluster import child_pids
from tests.e2e.test_redis_cluster import close_all
from tests.e2e.test_redis_cluster import node_pid
from tests.e2e.test_redis_cluster import pin_workers
from tests.e2e.test_resume_across_workers import gone
from tests.support.env import IN_CI
from tests.support.js import JS
from tests.support.js import ROOT
from tests.support.js import node_missing
from tests.support.redis_server import RedisServer
from tests.support.redis_server import require_redis_server
from tests.support.servers import GunicornServer
from tests.support.servers import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

#: What the SDK's callback must get, in this order: a nested object (non-ASCII
#: text, numbers, null, booleans, a list) and a bare JSON string.
DATA: t.Final = {
    "from": "alice",
    "text": "h\u00e9llo \U0001f600 \u2028",
    "n": [1, 2.5, -3, None, True, False],
    "meta": {"room": "chat-room-1", "empty": {}},
}
DONE: t.Final = "done"
NODE_TIMEOUT: t.Final = 120.0


class ExtensionServer(GunicornServer):
    """``gunicorn -k gevent`` serving tests/support/topics_app.py (an app's own
    ``Realtime(app)`` whose route calls ``realtime.send``) instead of ``wsgi:app``."""

    def command(self) -> list[str]:
        return [*super().command()[:-1], "tests.support.topics_app:app"]


Cluster: t.TypeAlias = "tuple[GunicornServer, Registry]"


@contextlib.contextmanager
def four_workers(server_class: type[GunicornServer], *, node: bool = True) -> Iterator[Cluster]:
    missing = node_missing() if node else None
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    with RedisServer(require_redis_server()) as redis_server:
        env = {"REALTIME_REDIS_URL": redis_server.url}
        with server_class(workers=WORKERS, env=env, extra_args=KEEP_ALIVE_ARGS) as server:
            registry = Registry(redis_server.url)
            try:
                nodes = registry.wait_for_nodes(WORKERS)
                # four workers of this master, each a node of the registry
                assert {node_pid(n) for n in nodes} == child_pids(server.pid)
                yield server, registry
                assert "Traceback" not in server.log_text(), server.log_tail()
            finally:
                registry.close()


def read_line(conn: socket.socket, limit: int = 65536) -> bytes:
    """One ``\\n``-terminated line from ``conn`` (bounded in size; the socket has a timeout)."""
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise AssertionError(f"control connection closed after {data!r}")
        data += chunk
        assert len(data) < limit, "control line too long"
    return data.partition(b"\n")[0]


def accept_or_exit(listener: socket.socket, node: subprocess.Popen[str]) -> socket.socket:
    """The Node script's control connection; fails at once if Node exits first."""
    deadline = time.monotonic() + NODE_TIMEOUT
    listener.settimeout(0.5)
    for _ in range(int(NODE_TIMEOUT / 0.5) + 1):
        try:
            conn, _ = listener.accept()
            return conn
        except TimeoutError:
            if node.poll() is not None or time.monotonic() > deadline:
                break
    out, err = node.communicate(timeout=30)
    raise AssertionError(f"node never asked (exit {node.returncode}):\n{out[-6000:]}{err[-3000:]}")


#: Sends the messages on a connection pinned to the given worker; returns what the
#: SDK's callbacks must get, in order.
Sender = t.Callable[[Pinned], list[object]]


def sdk_gets_from_another_worker(
    cluster: Cluster, send: Sender, *, topic: str, token: str = ""
) -> None:
    """Node subscribes to ``topic`` (as ``token``'s user); ``send`` runs on a
    connection pinned to a worker that does not hold the SDK's stream."""
    server, registry = cluster
    nodes = registry.live_nodes()
    pinned = pin_workers(server, nodes)
    listener = socket.create_server(("127.0.0.1", 0))
    env = {
        **os.environ,
        "BASE_URL": f"http://{server.host}:{server.port}",
        "CONTROL_PORT": str(listener.getsockname()[1]),
        "TOPIC": topic,
        "AUTH_TOKEN": token,
    }
    node = subprocess.Popen(
        ["node", "--test", "--test-reporter=spec", str(JS / "topics.test.mjs")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with accept_or_exit(listener, node) as conn:
            conn.settimeout(30)
            client_id = json.loads(read_line(conn))["clientId"]
            wait_until(lambda: registry.owner(client_id) is not None, timeout=10)
            stream_node = registry.owner(client_id)
            assert stream_node is not None and stream_node in nodes
            send_node = sorted(nodes - {stream_node})[0]
            assert node_pid(send_node) != node_pid(stream_node)
            sender = pinned[send_node]
            sent = send(sender)
            # the sending connection is still on that worker (not reconnected elsewhere)
            assert sender.request("GET", "/api/health")[1]["data"]["realtime"]["node"] == send_node
            reply = {"sent": sent, "streamNode": stream_node, "sendNode": send_node}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        out, err = node.communicate(timeout=NODE_TIMEOUT)
        assert node.returncode == 0, out[-6000:] + err[-3000:] + server.log_tail()
        assert "pass 1" in out and "fail 0" in out, out
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate(timeout=30)
        listener.close()
        close_all(pinned)


@pytest.mark.timeout(240)
def test_the_sdk_gets_a_custom_message_sent_on_another_worker() -> None:
    def publish(sender: Pinned) -> list[object]:
        secret = {"Authorization": f"Bearer {sender.server.secret}"}
        for topic, data in (
            ("chat-room-2", {"wrong": True}),
            ("chat-room-1", DATA),
            ("chat-room-1", DONE),
        ):
            body = {"topic": topic, "data": data}
            status, answer = sender.request("POST", "/api/realtime/publish", body, secret)
            assert status == 200, answer
        return [DATA, DONE]

    with four_workers(GunicornServer) as cluster:
        sdk_gets_from_another_worker(cluster, publish, topic="chat-room-1")


@pytest.mark.timeout(240)
def test_send_from_an_apps_own_route_reaches_the_sdk_on_another_worker() -> None:
    """Extension mode: the app's route calls ``realtime.send``; its topic authorizer
    keeps ``rooms/staff`` to alice, so bob's stream (opened here) never gets it."""

    def post(sender: Pinned, who: str, room: str, text: str) -> None:
        body = {"text": text}
        path = f"/rooms/{room}/messages"
        status, answer = sender.request("POST", path, body, {"Authorization": who})
        assert status == 200, answer

    with four_workers(ExtensionServer) as cluster:
        server = cluster[0]
        bob = HTTPEventStream(server.host, server.port)
        bob_id = bob.next_event(timeout=10).id
        status, _ = post_subscriptions(
            server.host,
            server.port,
            bob_id,
            ["rooms/staff", "rooms/lobby"],
            headers={"Authorization": "bob"},
        )
        assert status == 204

        def send(sender: Pinned) -> list[object]:
            post(sender, "bob", "lobby", "first")
            post(sender, "alice", "staff", "members only")
            post(sender, "bob", "staff", "from bob")
            post(sender, "bob", "lobby", "last")
            return [{"from": "alice", "text": "members only"}, {"from": "bob", "text": "from bob"}]

        with bob:
            sdk_gets_from_another_worker(cluster, send, topic="rooms/staff", token="alice")
            # bob is no member: the lobby's two messages, and nothing between them
            seen = [(e.event, json.loads(e.data)["text"]) for e in bob.next_events(2, timeout=10)]
            assert seen == [("rooms/lobby", "first"), ("rooms/lobby", "last")]


@pytest.mark.timeout(240)
def test_missed_custom_messages_are_replayed_on_resume_on_any_worker() -> None:
    """A stream cut after the first message resumes (``Last-Event-ID``) on whichever
    worker the new connection lands and gets exactly the messages it missed, in
    order with a record event between them, then live ones."""
    with four_workers(GunicornServer, node=False) as (server, _registry):
        stream = HTTPEventStream(server.host, server.port)
        cid = stream.next_event(timeout=10).id
        topics = ["chat-room-1", "posts/*"]
        assert post_subscriptions(server.host, server.port, cid, topics)[0] == 204
        secret = {"Authorization": f"Bearer {server.secret}"}

        def send(topic: str, data: object) -> None:
            body = {"topic": topic, "data": data}
            status, answer = request_json(
                server.host, server.port, "POST", "/api/realtime/publish", body, headers=secret
            )
            assert status == 200, answer

        send("chat-room-1", {"n": 1})
        first = stream.next_event(timeout=10)
        assert first.id.startswith(f"{cid}.") and json.loads(first.data) == {"n": 1}
        stream.abort()
        wait_until(lambda: gone(server, cid), timeout=10)
        send("chat-room-1", {"n": 2})
        assert server.publish("posts", "create", {"id": "p1"}) == 200
        send("chat-room-2", {"n": 3})  # not subscribed
        send("chat-room-1", {"n": 4})
        headers = {"Last-Event-ID": first.id}
        with HTTPEventStream(server.host, server.port, headers=headers) as resumed:
            assert resumed.next_event(timeout=10).id == cid
            missed = resumed.next_events(3, timeout=10)
            assert [(e.event, json.loads(e.data)) for e in missed] == [
                ("chat-room-1", {"n": 2}),
                ("posts/*", {"record": {"id": "p1"}, "action": "create"}),
                ("chat-room-1", {"n": 4}),
            ]
            send("chat-room-1", {"n": 5})
            assert json.loads(resumed.next_event(timeout=10).data) == {"n": 5}
