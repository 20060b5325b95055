"""``REALTIME_TRUSTED_PROXIES`` (``web/proxies.py``): the client's address behind nginx.

A bare Flask app shows what the wrapper makes of ``REMOTE_ADDR`` and the
forwarding headers; the service (``create_app``) shows the realtime address
checks using the result.  Requests come from ``environ_base={"REMOTE_ADDR": ...}``,
the peer address a server would put there.
"""

from __future__ import annotations

import json
import logging
import typing as t
from collections.abc import Iterator

import pytest
from flask import Flask
from flask import request
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from realtime_flask.config import Settings
from realtime_flask.errors import ConfigError
from realtime_flask.testing import TestEventStream
from realtime_flask.web.app import create_app
from realtime_flask.web.extension import Realtime
from realtime_flask.web.proxies import APPLIED_KEY
from realtime_flask.web.proxies import SETTING
from realtime_flask.web.proxies import ForwardingWarning
from realtime_flask.web.proxies import trust_proxies
from realtime_flask.web.proxies import wrap_wsgi_app
from realtime_flask.web.state import get_state
from tests.support.env import TEST_CONFIG

PROXY: t.Final = "10.0.0.2"  # nginx, as the app's peer
CLIENT: t.Final = "198.51.100.7"
OTHER: t.Final = "203.0.113.9"
LOGGER: t.Final = "realtime_flask.web.proxies"


def echo_app(trusted: int) -> Flask:
    app = Flask(__name__)

    @app.get("/who")
    def who() -> dict[str, object]:
        return {"addr": request.remote_addr, "scheme": request.scheme, "host": request.host}

    trust_proxies(app, trusted)
    return app


def who(app: Flask, peer: str, headers: dict[str, str] | None = None) -> dict[str, t.Any]:
    client = app.test_client()
    client.environ_base = {"REMOTE_ADDR": peer}
    response = client.get("/who", headers=headers or {})
    assert response.status_code == 200
    return t.cast("dict[str, t.Any]", response.json)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# --- the wrapper on its own ---------------------------------------------------------------------


def test_one_trusted_proxy_gives_the_address_it_appended() -> None:
    app = echo_app(1)
    forwarded = {
        "X-Forwarded-For": CLIENT,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
    }
    assert who(app, PROXY, forwarded) == {
        "addr": CLIENT,
        "scheme": "https",
        "host": "api.example.com",
    }


def test_a_spoofed_x_forwarded_for_changes_nothing() -> None:
    app = echo_app(1)
    # The client wrote "OTHER" itself; nginx ($proxy_add_x_forwarded_for) appended the real one.
    assert who(app, PROXY, {"X-Forwarded-For": f"{OTHER}, {CLIENT}"})["addr"] == CLIENT
    # Without any proxy in front (0), a client's own header is ignored altogether.
    assert who(echo_app(0), CLIENT, {"X-Forwarded-For": OTHER})["addr"] == CLIENT


def test_two_trusted_proxies_count_from_the_right() -> None:
    app = echo_app(2)
    # client -> load balancer (appends CLIENT) -> nginx (appends the balancer's 10.0.0.1) -> app
    headers = {"X-Forwarded-For": f"{OTHER}, {CLIENT}, 10.0.0.1"}
    assert who(app, PROXY, headers)["addr"] == CLIENT
    # Fewer entries than trusted proxies: the peer address stays.
    assert who(app, PROXY, {"X-Forwarded-For": CLIENT})["addr"] == PROXY


def test_a_request_that_bypassed_the_proxy_keeps_its_peer_address() -> None:
    app = echo_app(1)
    assert who(app, CLIENT) == {"addr": CLIENT, "scheme": "http", "host": "localhost"}


def test_no_trust_ignores_forwarding_headers_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = echo_app(0)
    assert who(app, PROXY)["addr"] == PROXY
    assert warnings_of(caplog) == []  # a direct request: nothing to say
    for _ in range(3):
        seen = who(app, PROXY, {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"})
        assert seen == {"addr": PROXY, "scheme": "http", "host": "localhost"}
    (record,) = warnings_of(caplog)
    message = record.getMessage()
    assert SETTING in message and PROXY in message
    assert "X-Forwarded-For, X-Forwarded-Proto" in message


@pytest.mark.parametrize(
    "header", ["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP", "Forwarded"]
)
def test_each_forwarding_header_triggers_the_warning(
    header: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    who(echo_app(0), PROXY, {header: "x"})
    assert len(warnings_of(caplog)) == 1


def test_no_warning_under_a_proxy_fix_of_the_apps_own(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = echo_app(0)
    app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
    assert who(app, PROXY, {"X-Forwarded-For": CLIENT})["addr"] == CLIENT
    assert warnings_of(caplog) == []


def test_trust_is_applied_once_per_app() -> None:
    app = echo_app(1)
    wrapped = app.wsgi_app
    trust_proxies(app, 1)
    assert app.wsgi_app is wrapped and app.extensions[APPLIED_KEY] == 1
    with pytest.raises(ValueError, match="already applied"):
        trust_proxies(app, 2)
    assert isinstance(wrap_wsgi_app(Flask(__name__).wsgi_app, 0), ForwardingWarning)
    with pytest.raises(ValueError, match=SETTING):
        wrap_wsgi_app(Flask(__name__).wsgi_app, -1)


# --- the setting --------------------------------------------------------------------------------


def test_the_setting_is_a_count_of_proxies() -> None:
    assert Settings.from_mapping({}).trusted_proxies == 0
    assert Settings.from_mapping({SETTING: "2"}).trusted_proxies == 2
    for bad in (-1, "one", 1.5, True):
        with pytest.raises(ConfigError, match=SETTING):
            Settings.from_mapping({SETTING: bad})


def test_the_extension_applies_the_setting() -> None:
    app = Flask(__name__)
    app.config.update({**TEST_CONFIG, SETTING: 1})
    Realtime(app)
    try:
        assert app.extensions[APPLIED_KEY] == 1
    finally:
        get_state(app).shutdown()


# --- the service's address checks behind one proxy ---------------------------------------------


@pytest.fixture
def service() -> Iterator[Flask]:
    app = create_app({**TEST_CONFIG, SETTING: 1})
    yield app
    get_state(app).shutdown()


def via_proxy(app: Flask, client_addr: str, spoofed: str = "") -> FlaskClient:
    """A test client whose requests come from nginx on behalf of ``client_addr``
    (after anything the client wrote itself into X-Forwarded-For)."""
    client = app.test_client()
    chain = f"{spoofed}, {client_addr}" if spoofed else client_addr
    client.environ_base = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": chain}
    return client


def open_stream(client: FlaskClient, last_event_id: str = "") -> tuple[TestEventStream, str]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    stream = TestEventStream(client.get("/api/realtime", buffered=False, headers=headers))
    first = stream.next_event()
    assert first.event == "PB_CONNECT"
    return stream, first.id


def subscribe(client: FlaskClient, client_id: str) -> tuple[int, t.Any]:
    response = client.post(
        "/api/realtime", json={"clientId": client_id, "subscriptions": ["posts/*"]}
    )
    return response.status_code, response.json


def test_another_client_address_cannot_subscribe_for_or_resume_a_client(service: Flask) -> None:
    owner = via_proxy(service, CLIENT)
    stranger = via_proxy(service, OTHER)
    spoofer = via_proxy(service, OTHER, spoofed=CLIENT)
    stream, cid = open_stream(owner)
    for intruder in (stranger, spoofer):
        status, body = subscribe(intruder, cid)
        assert (status, body["message"]) == (400, "Invalid realtime client.")
    assert subscribe(owner, cid)[0] == 204

    published = owner.post(
        "/api/realtime/publish",
        json={"collection": "posts", "action": "create", "record": {"id": "r1"}},
        headers={"Authorization": "Bearer test-secret"},
    )
    assert published.status_code == 200
    last = stream.next_event()
    assert json.loads(last.data)["record"]["id"] == "r1"
    stream.close()

    for intruder in (stranger, spoofer):
        other, other_id = open_stream(intruder, last.id)
        assert other_id != cid
        other.close()
    again, again_id = open_stream(owner, last.id)
    assert again_id == cid
    again.close()


def test_without_trust_a_resume_through_a_proxy_is_a_fresh_client_with_a_reset() -> None:
    """Issue #13's fail-safe: with REALTIME_TRUSTED_PROXIES=0 every client behind the
    proxy has the proxy's address, so no Last-Event-ID resume is honoured there:
    a fresh client and RF_RESET, never the parked client (and its login)."""
    app = create_app({**TEST_CONFIG, SETTING: 0})
    try:
        owner = via_proxy(app, CLIENT)
        stream, cid = open_stream(owner)
        assert subscribe(owner, cid)[0] == 204
        stream.close()
        for who_ in (via_proxy(app, OTHER), owner):
            resumed, resumed_id = open_stream(who_, cid)
            assert resumed_id != cid
            reset = resumed.next_event()
            assert (reset.event, json.loads(reset.data)) == (
                "RF_RESET",
                {"reason": "untrusted_proxy"},
            )
            resumed.close()
        # Without forwarding headers (no proxy in front) the address check decides.
        direct = app.test_client()
        direct.environ_base = {"REMOTE_ADDR": PROXY}
        first, first_id = open_stream(direct)
        first.close()
        again, again_id = open_stream(direct, first_id)
        assert again_id == first_id
        again.close()
    finally:
        get_state(app).shutdown()
