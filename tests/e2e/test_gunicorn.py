"""End to end against a real ``gunicorn -k gevent`` process (PROTOCOL.md §2, §3).

Everything goes over real sockets on loopback: the exact bytes of the stream,
the POST status codes and JSON bodies, disconnect detection, keep-alives and
graceful shutdown.

How "nothing else arrived" is proven without sleeping: every client also
subscribes to its own sentinel topic ``sentinel/<clientId>``.
``Client.expect`` publishes a sentinel record *after* the events under test;
the broker delivers in publish order, so once the sentinel frame is read, every
frame published before it has been read too, and the bytes between the last
mark and the sentinel frame must be exactly the expected frames.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import re
import time
import typing as t
import urllib.parse
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence

import pytest

from realtime_flask.testing import HTTPEventStream
from realtime_flask.testing import post_subscriptions
from realtime_flask.testing import request_json
from tests.support.servers import GunicornServer
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e

SECRET: t.Final = "e2e-gunicorn-secret"
SERVER_ENV: t.Final[Mapping[str, str]] = {
    "REALTIME_PUBLISH_SECRET": SECRET,
    "REALTIME_KEEPALIVE_INTERVAL": "1",
}
#: gunicorn.conf.py's graceful_timeout: streams must end well before it.
GRACEFUL_TIMEOUT: t.Final = 10.0

GENERIC_400: t.Final = "Something went wrong while processing your request."
CLIENT_ID_RE: t.Final = re.compile(r"[0-9A-Za-z]{40}")
JSON_TYPE: t.Final = "application/json"
FORM_TYPE: t.Final = "application/x-www-form-urlencoded"
SENTINEL: t.Final = "sentinel"
PING: t.Final = b":ping"

#: The records of PROTOCOL.md §2.3.
COLLECTION_ID: t.Final = "pbc_1125843985"
RECORD_ID: t.Final = "rqx23rjaqje0ipy"
OTHER_ID: t.Final = "otherrecord0001"
#: The SDK's ``fields`` options topic from PROTOCOL.md §2.3 (still percent-encoded).
FIELDS_TOPIC: t.Final = "posts/*?options=%7B%22query%22%3A%7B%22fields%22%3A%22id%2Ctitle%22%7D%7D"
#: An options topic whose options do not change the record for a guest
#: (``headers`` only feed rules; the standalone service has none).
HEADERS_TOPIC: t.Final = "posts/*?options=" + urllib.parse.quote(
    json.dumps({"headers": {"X-Flag": "1"}}, separators=(",", ":")), safe=""
)


def post_record(title: str) -> dict[str, object]:
    return {
        "collectionId": COLLECTION_ID,
        "collectionName": "posts",
        "id": RECORD_ID,
        "owner": "026j19mo0wmjjpx",
        "title": title,
    }


def error_body(data: Mapping[str, object], message: str = GENERIC_400) -> dict[str, object]:
    return {"data": dict(data), "message": message, "status": 400}


def frame(client_id: str, topic: str, action: str, record: Mapping[str, object]) -> bytes:
    """The exact bytes PocketBase writes for one record event (PROTOCOL.md §2.2)."""
    data = json.dumps({"record": record, "action": action}, separators=(",", ":"))
    return f"id:{client_id}\nevent:{topic}\ndata:{data}\n\n".encode()


EVENT_ID_LINE = re.compile(rb"^id:([A-Za-z0-9]+)\.([0-9-]+)$", re.MULTILINE)


def wire(stream: HTTPEventStream) -> bytes:
    """The stream's bytes with ``id:<clientId>.<event id>`` lines cut to ``id:<clientId>``.

    Every record frame carries the log position after the client id (for
    ``Last-Event-ID`` resume); the rest of each frame is PocketBase's, byte for
    byte.  The positions themselves must only ever grow.
    """
    raw = bytes(stream.raw)
    positions = [int(m.group(2).split(b"-")[0]) for m in EVENT_ID_LINE.finditer(raw)]
    assert positions == sorted(positions), positions
    return EVENT_ID_LINE.sub(rb"id:\1", raw)


def split_frames(data: bytes) -> list[bytes]:
    """Whole frames of ``data`` (which ends at a frame boundary), keep-alives left out."""
    blocks = data.split(b"\n\n")
    assert blocks[-1] == b"", f"not at a frame boundary: {data!r}"
    frames = []
    for block in blocks[:-1]:
        if block.startswith(b":"):
            assert block == PING, f"unexpected comment {block!r}"
            continue
        frames.append(block + b"\n\n")
    return frames


class Client:
    """An open stream with its client id, and exact-bytes expectations on it."""

    def __init__(self, server: GunicornServer, stream: HTTPEventStream, client_id: str) -> None:
        self.server = server
        self.stream = stream
        self.id = client_id
        self.offset = len(stream.raw)
        self._sentinel_numbers = itertools.count(1)

    @property
    def sentinel_topic(self) -> str:
        return f"{SENTINEL}/{self.id}"

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        sentinel: bool = True,
        headers: Mapping[str, str] | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> tuple[int, t.Any]:
        """POST ``topics`` (plus this client's sentinel topic unless ``sentinel=False``)."""
        subscriptions = [*topics, self.sentinel_topic] if sentinel else list(topics)
        return post_subscriptions(
            self.server.host,
            self.server.port,
            self.id,
            subscriptions,
            headers=headers,
            source_address=source_address,
        )

    def mark(self) -> None:
        """Expectations start from the bytes received so far."""
        self.offset = len(wire(self.stream))

    def expect(self, *changes: Sequence[bytes], timeout: float = 5.0) -> None:
        """Exactly these frames arrived since the last mark, then nothing else.

        Each argument is the frames of one change: their order within a change
        is free (PocketBase sends them from separate goroutines), the changes
        must arrive in the order given.  Needs the sentinel topic subscribed.
        """
        record = {"id": self.id, "n": next(self._sentinel_numbers)}
        assert self.server.publish(SENTINEL, "create", record) == 200
        sentinel = frame(self.id, self.sentinel_topic, "create", record)
        deadline = time.monotonic() + timeout
        expected_count = sum(len(change) for change in changes)
        for _ in range(expected_count + 20):
            event = self.stream.next_event(timeout=max(deadline - time.monotonic(), 0.001))
            if event.event == self.sentinel_topic and json.loads(event.data)["record"] == record:
                break
        else:
            raise AssertionError(f"sentinel not seen; received {bytes(self.stream.raw)!r}")
        raw = wire(self.stream)
        end = raw.find(sentinel, self.offset)
        assert end >= 0, f"sentinel frame not byte-exact in {raw[self.offset :]!r}"
        got = split_frames(raw[self.offset : end])
        self.offset = end + len(sentinel)
        assert len(got) == expected_count, got
        position = 0
        for change in changes:
            part = got[position : position + len(change)]
            assert sorted(part) == sorted(change), (part, change)
            position += len(change)


class Connector:
    """Opens streams (reading PB_CONNECT) and closes all of them at teardown."""

    def __init__(self, server: GunicornServer) -> None:
        self.server = server
        self.streams: list[HTTPEventStream] = []

    def __call__(self, *, source_address: tuple[str, int] | None = None) -> Client:
        stream = HTTPEventStream(self.server.host, self.server.port, source_address=source_address)
        self.streams.append(stream)
        assert stream.status == 200
        event = stream.next_event(timeout=5.0)
        assert event.event == "PB_CONNECT"
        assert json.loads(event.data) == {"clientId": event.id}
        return Client(self.server, stream, event.id)

    def close_all(self) -> None:
        for stream in self.streams:
            stream.close()
        self.streams.clear()


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    with GunicornServer(workers=1, env=SERVER_ENV) as running:
        yield running
        assert running.running, f"gunicorn died during the tests\n{running.log_tail()}"


@pytest.fixture
def connect(server: GunicornServer) -> Iterator[Connector]:
    connector = Connector(server)
    yield connector
    connector.close_all()


def post_raw(
    server: GunicornServer,
    body: bytes,
    content_type: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, t.Any]:
    return request_json(
        server.host,
        server.port,
        "POST",
        "/api/realtime",
        raw=body,
        headers={"Content-Type": content_type, **(headers or {})},
    )


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


# --- GET /api/realtime -------------------------------------------------------------------


def test_stream_headers_and_first_bytes(server: GunicornServer) -> None:
    with HTTPEventStream(server.host, server.port) as stream:
        assert stream.status == 200
        assert stream.version == "HTTP/1.1"
        headers = stream.headers
        assert headers.get_all("Content-Type") == ["text/event-stream"]
        assert headers.get_all("Cache-Control") == ["no-store"]
        assert headers.get_all("X-Accel-Buffering") == ["no"]
        assert headers.get_all("Transfer-Encoding") == ["chunked"]
        assert "Content-Length" not in headers

        event = stream.next_event(timeout=5.0)
        client_id = event.id
        assert CLIENT_ID_RE.fullmatch(client_id), client_id
        expected = (
            f'id:{client_id}\nevent:PB_CONNECT\ndata:{{"clientId":"{client_id}"}}\n\n'.encode()
        )
        assert bytes(stream.raw[: len(expected)]) == expected
        assert (event.event, json.loads(event.data)) == ("PB_CONNECT", {"clientId": client_id})


def test_every_stream_gets_a_new_client_id(connect: Connector) -> None:
    ids = {connect().id for _ in range(5)}
    assert len(ids) == 5


# --- record events -----------------------------------------------------------------------


def test_one_frame_per_matching_subscription_in_change_order(
    server: GunicornServer, connect: Connector
) -> None:
    alice = connect()
    other = connect()
    topics = [
        "posts/*",
        f"posts/{RECORD_ID}",
        HEADERS_TOPIC,
        f"{COLLECTION_ID}/*",
        f"{COLLECTION_ID}/{RECORD_ID}",
        "posts",
        # these match nothing below
        f"posts/{OTHER_ID}",
        "comments/*",
        "Posts/*",
        f"posts/{RECORD_ID[:-1]}",
    ]
    matching = topics[:6]
    assert alice.subscribe(topics) == (204, None)
    assert other.subscribe([f"posts/{OTHER_ID}"]) == (204, None)

    changes = [("create", post_record("hello")), ("update", post_record("hello2"))]
    changes.append(("delete", post_record("hello2")))
    for action, record in changes:
        assert server.publish("posts", action, record, collection_id=COLLECTION_ID) == 200
    alice.expect(
        *[
            [frame(alice.id, topic, action, record) for topic in matching]
            for action, record in changes
        ]
    )
    # The other client got nothing for this record, as the next event it does get shows.
    other_record = {"id": OTHER_ID, "title": "other"}
    assert server.publish("posts", "update", other_record) == 200
    other.expect([frame(other.id, f"posts/{OTHER_ID}", "update", other_record)])
    # Alice's posts/* topics match that one too (no collectionId published: no id topics).
    alice.expect(
        [
            frame(alice.id, topic, "update", other_record)
            for topic in ("posts/*", HEADERS_TOPIC, "posts", f"posts/{OTHER_ID}")
        ]
    )


def test_options_topic_is_echoed_verbatim_as_event_name(
    server: GunicornServer, connect: Connector
) -> None:
    client = connect()
    assert client.subscribe([FIELDS_TOPIC]) == (204, None)
    assert server.publish("posts", "create", post_record("hello")) == 200
    event = client.stream.next_event(timeout=5.0)
    assert (event.event, event.id.partition(".")[0]) == (FIELDS_TOPIC, client.id)
    payload = json.loads(event.data)
    assert payload["action"] == "create"
    assert payload["record"]["id"] == RECORD_ID
    assert f"\nevent:{FIELDS_TOPIC}\n".encode() in client.stream.raw


def test_options_fields_picks_record_fields(server: GunicornServer, connect: Connector) -> None:
    client = connect()
    assert client.subscribe([FIELDS_TOPIC]) == (204, None)
    assert server.publish("posts", "create", post_record("hello")) == 200
    client.stream.next_event(timeout=5.0)
    raw = wire(client.stream)[client.offset :]
    head = f"id:{client.id}\nevent:{FIELDS_TOPIC}\ndata:".encode()
    assert raw.startswith(head), raw
    data = raw[len(head) : raw.index(b"\n\n")]
    assert json.loads(data) == {
        "record": {"id": RECORD_ID, "title": "hello"},
        "action": "create",
    }


def test_post_replaces_the_whole_set_and_empty_list_clears(
    server: GunicornServer, connect: Connector
) -> None:
    client = connect()
    comment = {"id": "comment00000001", "text": "hi"}
    post = {"id": RECORD_ID, "title": "hello"}
    assert client.subscribe(["posts/*"]) == (204, None)
    assert client.subscribe(["comments/*"]) == (204, None)
    assert server.publish("posts", "create", post) == 200
    assert server.publish("comments", "create", comment) == 200
    client.expect([frame(client.id, "comments/*", "create", comment)])

    assert client.subscribe([], sentinel=False) == (204, None)
    assert server.publish("posts", "update", post) == 200
    assert server.publish("comments", "update", comment) == 200
    # Only now subscribe the sentinel again: the two updates were dispatched
    # while the set was empty, so they must be missing before the sentinel.
    assert client.subscribe([]) == (204, None)
    client.expect()


# --- POST /api/realtime: errors ----------------------------------------------------------

KEEP_TOPIC: t.Final = "posts/keep"
KEEP_RECORD: t.Final[Mapping[str, object]] = {"id": "keep", "title": "still here"}
REQUIRED: t.Final = {"clientId": {"code": "validation_required", "message": "Cannot be blank."}}
CONTROL_CHARS = {
    "code": "validation_invalid_topic",
    "message": "Must not contain control characters.",
}
TOO_LONG_TOPIC = {
    "code": "validation_length_too_long",
    "message": "The length must be no more than 2500.",
    "params": {"max": 2500, "min": 0},
}

BodyMaker = t.Callable[[str], tuple[bytes, str]]

REJECTED_POSTS: t.Final = [
    pytest.param(lambda cid: (b'{"clientId":', JSON_TYPE), error_body({}), id="malformed-json"),
    pytest.param(
        lambda cid: (json_bytes({"clientId": cid, "subscriptions": "comments/*"}), JSON_TYPE),
        error_body({}),
        id="subscriptions-not-an-array",
    ),
    pytest.param(
        lambda cid: (json_bytes({"subscriptions": ["comments/*"]}), JSON_TYPE),
        error_body(REQUIRED),
        id="missing-client-id",
    ),
    pytest.param(lambda cid: (b"", JSON_TYPE), error_body(REQUIRED), id="empty-body"),
    pytest.param(
        lambda cid: (json_bytes({"clientId": cid, "subscriptions": ["comments/*"]}), "text/plain"),
        error_body(REQUIRED),
        id="json-as-text-plain",
    ),
    pytest.param(
        lambda cid: (
            json_bytes({"clientId": "a" * 256, "subscriptions": ["comments/*"]}),
            JSON_TYPE,
        ),
        error_body(
            {
                "clientId": {
                    "code": "validation_length_out_of_range",
                    "message": "The length must be between 1 and 255.",
                    "params": {"max": 255, "min": 1},
                }
            }
        ),
        id="client-id-256-chars",
    ),
    pytest.param(
        lambda cid: (
            json_bytes({"clientId": cid, "subscriptions": [f"t{i}" for i in range(1001)]}),
            JSON_TYPE,
        ),
        error_body(
            {
                "subscriptions": {
                    "code": "validation_length_too_long",
                    "message": "The length must be no more than 1000.",
                    "params": {"max": 1000, "min": 0},
                }
            }
        ),
        id="1001-topics",
    ),
    pytest.param(
        lambda cid: (json_bytes({"clientId": cid, "subscriptions": ["x" * 2501]}), JSON_TYPE),
        error_body({"subscriptions": {"0": TOO_LONG_TOPIC}}),
        id="topic-2501-chars-first",
    ),
    pytest.param(
        lambda cid: (
            json_bytes({"clientId": cid, "subscriptions": ["comments/*", "x", "x" * 2501]}),
            JSON_TYPE,
        ),
        error_body({"subscriptions": {"2": TOO_LONG_TOPIC}}),
        id="topic-2501-chars-third",
    ),
    pytest.param(
        lambda cid: (
            json_bytes({"clientId": cid, "subscriptions": ["comments/*", "a\r\nevent:forged"]}),
            JSON_TYPE,
        ),
        error_body({"subscriptions": {"1": CONTROL_CHARS}}),
        id="topic-with-crlf",
    ),
    pytest.param(
        lambda cid: (json_bytes({"clientId": cid, "subscriptions": ["comments/\x00"]}), JSON_TYPE),
        error_body({"subscriptions": {"0": CONTROL_CHARS}}),
        id="topic-with-nul",
    ),
    pytest.param(
        lambda cid: (
            json_bytes({"clientId": cid, "subscriptions": ["comments/*", "b", "del\x7f"]}),
            JSON_TYPE,
        ),
        error_body({"subscriptions": {"2": CONTROL_CHARS}}),
        id="topic-with-del",
    ),
    pytest.param(
        lambda cid: (
            json_bytes({"clientId": "x" * 40, "subscriptions": [f"t{i}" for i in range(1001)]}),
            JSON_TYPE,
        ),
        error_body(
            {
                "subscriptions": {
                    "code": "validation_length_too_long",
                    "message": "The length must be no more than 1000.",
                    "params": {"max": 1000, "min": 0},
                }
            }
        ),
        id="validation-before-client-lookup",
    ),
]


@pytest.mark.parametrize(("make_body", "expected"), REJECTED_POSTS)
def test_rejected_post_has_pocketbase_error_and_changes_nothing(
    server: GunicornServer, connect: Connector, make_body: BodyMaker, expected: dict[str, object]
) -> None:
    client = connect()
    assert client.subscribe([KEEP_TOPIC]) == (204, None)
    body, content_type = make_body(client.id)
    assert post_raw(server, body, content_type) == (400, expected)
    # The previous subscriptions still work, and nothing from the rejected POST was applied.
    assert server.publish("comments", "create", {"id": "comment00000001"}) == 200
    assert server.publish("posts", "update", KEEP_RECORD) == 200
    client.expect([frame(client.id, KEEP_TOPIC, "update", KEEP_RECORD)])


def test_unknown_client_id_is_404(server: GunicornServer) -> None:
    status, body = post_subscriptions(server.host, server.port, "x" * 40, ["posts/*"])
    assert (status, body) == (
        404,
        {"data": {}, "message": "Missing or invalid client id.", "status": 404},
    )


def test_post_from_another_address_is_rejected(server: GunicornServer, connect: Connector) -> None:
    client = connect()
    assert client.subscribe([KEEP_TOPIC]) == (204, None)
    status, body = client.subscribe(["comments/*"], source_address=("127.0.0.2", 0))
    assert (status, body) == (400, error_body({}, "Invalid realtime client."))
    assert server.publish("comments", "create", {"id": "comment00000001"}) == 200
    assert server.publish("posts", "update", KEEP_RECORD) == 200
    client.expect([frame(client.id, KEEP_TOPIC, "update", KEEP_RECORD)])
    # A stream opened from 127.0.0.2 is managed from 127.0.0.2.
    remote = connect(source_address=("127.0.0.2", 0))
    assert remote.subscribe([], source_address=("127.0.0.2", 0)) == (204, None)
    assert remote.subscribe([])[0] == 400


def test_wrong_method_is_404(server: GunicornServer) -> None:
    status, body = request_json(server.host, server.port, "PUT", "/api/realtime", {})
    assert (status, body) == (
        404,
        {"data": {}, "message": "The requested resource wasn't found.", "status": 404},
    )


# --- POST /api/realtime: accepted --------------------------------------------------------


def test_guest_with_garbage_authorization_is_accepted(
    server: GunicornServer, connect: Connector
) -> None:
    client = connect()
    assert client.subscribe([KEEP_TOPIC], headers={"Authorization": "garbage"}) == (204, None)
    assert server.publish("posts", "update", KEEP_RECORD) == 200
    client.expect([frame(client.id, KEEP_TOPIC, "update", KEEP_RECORD)])


def test_exactly_1000_topics_is_accepted(server: GunicornServer, connect: Connector) -> None:
    client = connect()
    topics = [f"t{i}" for i in range(998)] + [KEEP_TOPIC]
    assert len([*topics, client.sentinel_topic]) == 1000
    assert client.subscribe(topics) == (204, None)
    assert server.publish("posts", "update", KEEP_RECORD) == 200
    client.expect([frame(client.id, KEEP_TOPIC, "update", KEEP_RECORD)])


def test_topic_of_2500_chars_is_accepted_and_echoed(
    server: GunicornServer, connect: Connector
) -> None:
    client = connect()
    record_id = "k" * (2500 - len("posts/"))
    topic = f"posts/{record_id}"
    assert len(topic) == 2500
    assert client.subscribe([topic]) == (204, None)
    record = {"id": record_id}
    assert server.publish("posts", "create", record) == 200
    client.expect([frame(client.id, topic, "create", record)])


def test_urlencoded_form_body_is_accepted(server: GunicornServer, connect: Connector) -> None:
    client = connect()
    form = urllib.parse.urlencode(
        [
            ("clientId", client.id),
            ("subscriptions", "posts/*"),
            ("subscriptions", client.sentinel_topic),
        ]
    )
    assert post_raw(server, form.encode(), FORM_TYPE) == (204, None)
    post = {"id": RECORD_ID, "title": "form"}
    assert server.publish("posts", "create", post) == 200
    assert server.publish("comments", "create", {"id": "comment00000001"}) == 200
    client.expect([frame(client.id, "posts/*", "create", post)])


# --- disconnects -------------------------------------------------------------------------


def post_status(server: GunicornServer, client_id: str) -> int:
    return post_subscriptions(server.host, server.port, client_id, [])[0]


def test_client_side_close_makes_the_id_404(server: GunicornServer, connect: Connector) -> None:
    client = connect()
    assert client.subscribe(["posts/*"]) == (204, None)
    client.stream.close()
    wait_until(
        lambda: post_status(server, client.id) == 404,
        timeout=5.0,
        message=f"client {client.id} still accepted after its stream closed",
    )


def test_200_dropped_clients_are_all_forgotten(server: GunicornServer, connect: Connector) -> None:
    # Baseline: the streams of earlier tests are closed (their teardown ran).
    wait_until(lambda: server.client_count() == 0, timeout=5.0, message="earlier streams open")
    clients = [connect() for _ in range(200)]
    for client in clients:
        assert client.subscribe(["posts/*", f"posts/{client.id}"]) == (204, None)
    assert server.client_count() == 200

    for number, client in enumerate(clients):
        if number % 2:
            client.stream.abort()  # RST
        else:
            client.stream.close()  # FIN

    wait_until(
        lambda: server.client_count() == 0,
        timeout=5.0,
        message=lambda: f"{server.client_count()} clients still registered",
    )
    pending = {client.id for client in clients}

    def all_forgotten() -> bool:
        pending.difference_update([cid for cid in pending if post_status(server, cid) == 404])
        return not pending

    wait_until(all_forgotten, timeout=5.0, message=lambda: f"{len(pending)} ids still accepted")
    assert server.health()["data"]["realtime"]["clients"] == 0


# --- keep-alive --------------------------------------------------------------------------


def test_quiet_stream_gets_ping_comments(server: GunicornServer, connect: Connector) -> None:
    client = connect()
    assert client.subscribe([]) == (204, None)
    stream = client.stream
    assert stream.comment_count == 0

    def publish_after_first_ping() -> int:
        wait_until(lambda: stream.comment_count > 0, timeout=5.0, message="no :ping comment")
        return server.publish(SENTINEL, "create", {"id": client.id})

    # The main thread reads the stream; a helper publishes an event as soon as
    # a ping has been parsed, which ends the read.  No read ever times out.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(publish_after_first_ping)
        try:
            event = stream.next_event(timeout=8.0)
        finally:
            status = future.result(timeout=10.0)
    assert status == 200
    assert event.event == client.sentinel_topic
    assert stream.comment_count >= 1
    between = wire(stream)[client.offset :].split(b"id:", 1)[0]
    assert between and between == b":ping\n\n" * (len(between) // len(b":ping\n\n")), between


def test_stream_is_readable_after_a_read_timeout(
    server: GunicornServer, connect: Connector
) -> None:
    client = connect()
    assert client.subscribe([]) == (204, None)
    with pytest.raises(TimeoutError):
        client.stream.next_event(timeout=0.05)
    client.expect()


# --- graceful shutdown -------------------------------------------------------------------


def test_sigterm_ends_every_stream_cleanly_and_exits_0() -> None:
    with GunicornServer(workers=1, env=SERVER_ENV) as server:
        connector = Connector(server)
        try:
            clients = [connector() for _ in range(3)]
            for client in clients:
                assert client.subscribe(["posts/*"]) == (204, None)
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                started = time.monotonic()
                stopping = pool.submit(server.stop)
                for client in clients:
                    assert client.stream.wait_closed(timeout=GRACEFUL_TIMEOUT / 2) == []
                    # the 0-size last chunk arrived: a clean end, not a cut connection.
                    assert client.stream.ended_cleanly
                ended = time.monotonic() - started
                exit_code = stopping.result(timeout=GRACEFUL_TIMEOUT + 10)
            assert ended < GRACEFUL_TIMEOUT / 2
            assert exit_code == 0, server.log_tail()
            assert "graceful timeout" not in server.log_text().lower(), server.log_tail()
        finally:
            connector.close_all()
