"""The resume rules as a property (issue #10): whatever the interleaving of events,
dropped streams and reconnects, each client receives its visible events in order,
without duplicates, and without gaps unless an ``RF_RESET`` came first.

A program of steps is generated: publish to ``posts`` or ``tags``; read what a
stream has queued; drop a stream (reading all, part or none of what was queued
first: what is unread is lost, as on a real socket); reconnect with the
``Last-Event-ID`` an EventSource would send (the last id it saw; after a
reconnect that is PB_CONNECT's bare client id until the next event).  The hub
runs over a synchronous MemoryBroker and a LocalRouter; history is short in half
the runs, so replays must also be able to fail, with a reset.
"""

from __future__ import annotations

import json
import os
import typing as t
from dataclasses import dataclass
from dataclasses import field

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from realtime_flask.config import Settings
from realtime_flask.core.events import Event
from realtime_flask.core.sse import SSEParser
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.broker import MemoryBroker
from realtime_flask.engine.hub import RESET_EVENT
from realtime_flask.engine.hub import RealtimeState
from realtime_flask.engine.manager import RealtimeClient
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.router import LocalRouter
from tests.support.clock import FakeClock

EXAMPLES: t.Final = int(os.environ.get("RF_RESUME_EXAMPLES", "1000"))
ADDR: t.Final = "127.0.0.1"
#: Each client's topics.
TOPICS: t.Final = (("posts/*",), ("tags/*",), ("posts/*", "tags/*"))

Step = tuple[str, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(0, 1)),  # 0: posts, 1: tags
        st.tuples(st.just("read"), st.integers(0, len(TOPICS) - 1)),
        st.tuples(st.just("drop_read"), st.integers(0, len(TOPICS) - 1)),
        st.tuples(st.just("drop_unread"), st.integers(0, len(TOPICS) - 1)),
        st.tuples(st.just("reconnect"), st.integers(0, len(TOPICS) - 1)),
    ),
    max_size=60,
)


@dataclass
class Follower:
    """One EventSource: its connection, what it saw, and what it may see."""

    topics: tuple[str, ...]
    client: RealtimeClient | None = None
    client_id: str = ""
    last_event_id: str = ""
    parser: SSEParser = field(default_factory=SSEParser)
    #: what it received, in order: ("event", record id) or ("reset", "")
    received: list[tuple[str, str]] = field(default_factory=list)
    #: record ids of the events its topics match, published since it subscribed
    visible: list[str] = field(default_factory=list)

    def matches(self, collection: str) -> bool:
        return f"{collection}/*" in self.topics


class World:
    def __init__(self, history_size: int) -> None:
        self.manager = RealtimeManager(clock=FakeClock(), queue_size=4096)
        self.state = RealtimeState(
            settings=Settings.from_mapping({}),
            manager=self.manager,
            broker=MemoryBroker(history_size=history_size),
            reaper=None,
            auth_resolver=lambda request: None,
            router=LocalRouter(self.manager, grace=60.0),
        )
        self.state.start()
        self.followers = [Follower(topics) for topics in TOPICS]
        self.published = 0
        for follower in self.followers:
            follower.client = self.state.open_client(ADDR)
            follower.client_id = follower.last_event_id = follower.client.id
            topics = [parse_topic(x) for x in follower.topics]
            self.manager.subscribe(follower.client.id, topics, None)

    def publish(self, which: int) -> None:
        collection = ("posts", "tags")[which]
        self.published += 1
        record_id = f"r{self.published}"
        for follower in self.followers:
            if follower.matches(collection):
                follower.visible.append(record_id)
        self.state.publish(Event(collection, "create", {"id": record_id}))

    def read(self, follower: Follower) -> None:
        if follower.client is None:
            return
        chunk = follower.client.controller.get(timeout=0)
        if chunk is None:
            return
        for event in follower.parser.feed(chunk):
            if event.id:
                follower.last_event_id = event.id
            if event.event == RESET_EVENT:
                follower.received.append(("reset", ""))
            else:
                follower.received.append(("event", json.loads(event.data)["record"]["id"]))

    def drop(self, follower: Follower, *, read_first: bool) -> None:
        if follower.client is None:
            return
        if read_first:
            self.read(follower)
        self.manager.remove_client(
            follower.client_id, reason="stream closed", expected=follower.client
        )
        follower.client = None

    def reconnect(self, follower: Follower) -> None:
        if follower.client is not None:
            return
        client = self.state.open_client(ADDR, follower.last_event_id)
        assert client.id == follower.client_id, "the reconnect got a fresh client"
        follower.client = client
        follower.parser = SSEParser()
        follower.last_event_id = client.id  # PB_CONNECT's id: the bare client id

    def finish(self) -> None:
        for follower in self.followers:
            self.reconnect(follower)
            self.read(follower)
        self.state.shutdown()


def check(follower: Follower) -> None:
    """Received events: in visible order, no duplicate, a gap only right after a reset."""
    at = 0
    reset_since_last_event = False
    for kind, record_id in follower.received:
        if kind == "reset":
            reset_since_last_event = True
            continue
        assert record_id in follower.visible[at:], (
            f"{record_id} out of order or duplicated: {follower.received} vs {follower.visible}"
        )
        index = follower.visible.index(record_id, at)
        assert index == at or reset_since_last_event, (
            f"gap before {record_id} without RF_RESET: {follower.received} vs {follower.visible}"
        )
        at = index + 1
        reset_since_last_event = False
    assert at == len(follower.visible) or reset_since_last_event, (
        f"events missing at the end without RF_RESET: {follower.received} vs {follower.visible}"
    )


@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(program=steps, short_history=st.booleans())
def test_every_client_gets_its_events_in_order_or_a_reset_at_each_gap(
    program: list[Step], short_history: bool
) -> None:
    world = World(history_size=4 if short_history else 1000)
    for op, arg in program:
        if op == "publish":
            world.publish(arg)
            continue
        follower = world.followers[arg]
        if op == "read":
            world.read(follower)
        elif op == "drop_read":
            world.drop(follower, read_first=True)
        elif op == "drop_unread":
            world.drop(follower, read_first=False)
        else:
            world.reconnect(follower)
    world.finish()
    for follower in world.followers:
        check(follower)
        if not short_history:  # everything fits in the history: never a reset
            assert ("reset", "") not in follower.received
