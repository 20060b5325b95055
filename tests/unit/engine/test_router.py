"""LocalRouter: a subscriptions POST applied in this process, and closed clients parked for resume.

The checks (unknown client 404, other address 400, auth transition 403) are the
manager's, in PocketBase's order; the router adds the parking of closed clients
for ``grace`` seconds so a reconnect with ``Last-Event-ID`` gets its topics back.
"""

from __future__ import annotations

import pytest

from realtime_flask.core.events import AuthUser
from realtime_flask.core.events import Event
from realtime_flask.core.topics import Subscription
from realtime_flask.core.topics import parse_topic
from realtime_flask.engine.manager import RealtimeManager
from realtime_flask.engine.router import LocalRouter
from realtime_flask.engine.router import Router
from realtime_flask.errors import AccessDenied
from realtime_flask.errors import BadRequest
from realtime_flask.errors import ClientNotFound
from tests.support.clock import FakeClock

ALICE = AuthUser(collection_id="_pb_users_auth_", id="alice0000000001", collection_name="users")
BOB = AuthUser(collection_id="_pb_users_auth_", id="bob000000000001", collection_name="users")
ADDR = "10.0.0.1"
GRACE = 30.0


def subs(*topics: str) -> list[Subscription]:
    return [parse_topic(topic) for topic in topics]


def raws(items: tuple[Subscription, ...]) -> list[str]:
    return [sub.raw for sub in items]


@pytest.fixture
def router(manager: RealtimeManager) -> LocalRouter:
    return LocalRouter(manager, grace=GRACE)


def test_is_a_router_whose_lifecycle_does_nothing(router: LocalRouter) -> None:
    as_protocol: Router = router
    as_protocol.start()
    as_protocol.register("anything")
    assert as_protocol.status() == {"router": "local"}
    as_protocol.close()


# -- subscribe ---------------------------------------------------------------------------


def test_subscribe_applies_the_post_to_this_process(
    manager: RealtimeManager, router: LocalRouter
) -> None:
    client = manager.register_client(remote_addr=ADDR)
    router.subscribe(client.id, subs("posts", "posts/r1"), ALICE, ADDR)
    assert raws(client.subscriptions) == ["posts", "posts/r1"]
    assert client.user == ALICE
    result = manager.dispatch(Event("posts", "create", {"id": "r1"}))
    assert (result.clients, result.frames) == (1, 2)


def test_subscribe_replaces_the_topics(manager: RealtimeManager, router: LocalRouter) -> None:
    client = manager.register_client(remote_addr=ADDR)
    router.subscribe(client.id, subs("posts"), None, ADDR)
    router.subscribe(client.id, subs("comments"), None, ADDR)
    assert raws(client.subscriptions) == ["comments"]
    assert manager.dispatch(Event("posts", "create", {"id": "r1"})).clients == 0


def test_unknown_client_is_not_found(manager: RealtimeManager, router: LocalRouter) -> None:
    with pytest.raises(ClientNotFound):
        router.subscribe("x" * 40, subs("posts"), None, ADDR)
    assert manager.index_size() == 0


def test_a_post_from_another_address_is_refused(
    manager: RealtimeManager, router: LocalRouter
) -> None:
    client = manager.register_client(remote_addr=ADDR)
    router.subscribe(client.id, subs("posts"), None, ADDR)
    with pytest.raises(BadRequest):
        router.subscribe(client.id, subs("comments"), None, "10.0.0.2")
    assert raws(client.subscriptions) == ["posts"]


@pytest.mark.parametrize(("before", "after"), [(ALICE, BOB), (ALICE, None)])
def test_an_auth_transition_is_denied_and_changes_nothing(
    manager: RealtimeManager, router: LocalRouter, before: AuthUser, after: AuthUser | None
) -> None:
    client = manager.register_client(remote_addr=ADDR)
    router.subscribe(client.id, subs("posts"), before, ADDR)
    with pytest.raises(AccessDenied):
        router.subscribe(client.id, subs("comments"), after, ADDR)
    assert client.user == before
    assert raws(client.subscriptions) == ["posts"]


def test_a_guest_may_authenticate(manager: RealtimeManager, router: LocalRouter) -> None:
    client = manager.register_client(remote_addr=ADDR)
    router.subscribe(client.id, subs("posts"), None, ADDR)
    router.subscribe(client.id, subs("posts"), ALICE, ADDR)
    assert client.user == ALICE


# -- parked clients ----------------------------------------------------------------------


def test_a_closed_client_is_parked_with_its_topics_auth_and_age(
    manager: RealtimeManager, router: LocalRouter, fake_clock: FakeClock
) -> None:
    client = manager.register_client(remote_addr=ADDR)
    router.subscribe(client.id, subs("posts", "comments"), ALICE, ADDR)
    fake_clock.advance(5)
    assert manager.remove_client(client.id, reason="stream ended")
    fake_clock.advance(3)
    parked = router.take_parked(client.id, ADDR)
    assert parked is not None
    assert (parked.id, parked.user, parked.remote_addr) == (client.id, ALICE, ADDR)
    assert raws(parked.subscriptions) == ["posts", "comments"]
    assert parked.reason == "stream ended"
    assert parked.age == pytest.approx(8.0)  # connected 5 s, then parked 3 s
    assert router.take_parked(client.id, ADDR) is None  # taken once


def test_a_parked_client_is_resumed_by_the_manager(
    manager: RealtimeManager, router: LocalRouter
) -> None:
    client = manager.register_client(remote_addr=ADDR)
    router.subscribe(client.id, subs("posts"), ALICE, ADDR)
    manager.remove_client(client.id)
    parked = router.take_parked(client.id, ADDR)
    resumed = manager.register_client(remote_addr=ADDR, resume=parked)
    assert (resumed.id, resumed.user) == (client.id, ALICE)
    assert raws(resumed.subscriptions) == ["posts"]


def test_only_the_same_address_takes_a_parked_client(
    manager: RealtimeManager, router: LocalRouter
) -> None:
    client = manager.register_client(remote_addr=ADDR)
    manager.remove_client(client.id)
    assert router.take_parked(client.id, "10.0.0.2") is None
    assert router.take_parked(client.id, ADDR) is not None


def test_a_parked_client_expires_after_grace(
    manager: RealtimeManager, router: LocalRouter, fake_clock: FakeClock
) -> None:
    kept, expired = manager.register_client(remote_addr=ADDR), manager.register_client()
    manager.remove_client(expired.id)
    fake_clock.advance(GRACE - 1)
    manager.remove_client(kept.id)
    fake_clock.advance(1)
    assert router.take_parked(expired.id, None) is None
    assert router.take_parked(kept.id, ADDR) is not None


def test_a_client_ended_for_its_max_lifetime_is_not_parked(
    manager: RealtimeManager, router: LocalRouter, fake_clock: FakeClock
) -> None:
    client = manager.register_client(remote_addr=ADDR)
    fake_clock.advance(manager.max_lifetime)
    assert manager.reap() == [client.id]
    assert router.take_parked(client.id, ADDR) is None


def test_without_grace_nothing_is_parked(manager: RealtimeManager) -> None:
    router = LocalRouter(manager)
    client = manager.register_client(remote_addr=ADDR)
    manager.remove_client(client.id)
    assert router.take_parked(client.id, ADDR) is None


def test_the_oldest_parked_clients_go_first_beyond_max_parked(manager: RealtimeManager) -> None:
    router = LocalRouter(manager, grace=GRACE, max_parked=2)
    clients = [manager.register_client() for _ in range(3)]
    for client in clients:
        manager.remove_client(client.id)
    assert router.take_parked(clients[0].id, None) is None
    assert router.take_parked(clients[1].id, None) is not None
    assert router.take_parked(clients[2].id, None) is not None
