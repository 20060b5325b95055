"""The live demo page and the official SDK's browser bundle, in headless Chromium.

A real ``gunicorn -k gevent`` server runs the collections of
``tests/js/schema.json``; the pages come from a ``StaticSite`` on another port,
so every API call and the event stream are cross-origin (CORS preflights
included: the POSTs carry ``Authorization`` and a JSON body).  The test writes
records through the API with urllib and waits, with Playwright's waits, for
the page to show them appear, change and vanish.  One screenshot per step goes
to the test's ``tmp_path`` (the path is printed; ``pytest -s`` shows it).

Needs Debian's chromium (``/usr/bin/chromium``) and Playwright for Python;
the SDK test also needs ``npm ci``.  Without them the tests skip with the
reason, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import http.client
import re
import typing as t
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from realtime_flask.testing import request_json
from tests.support.browser import CutProxy
from tests.support.browser import Screenshots
from tests.support.browser import StaticSite
from tests.support.browser import chromium_missing
from tests.support.browser import chromium_path
from tests.support.env import IN_CI
from tests.support.env import REPO_ROOT
from tests.support.env import SCHEMA_FIXTURE
from tests.support.servers import GunicornServer

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser
    from playwright.sync_api import ConsoleMessage
    from playwright.sync_api import Locator
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: Milliseconds a page gets to show what the test waits for.
WAIT_MS: t.Final = 15_000
SDK_BUNDLE: t.Final = REPO_ROOT / "node_modules" / "pocketbase" / "dist" / "pocketbase.umd.js"
SDK_PAGE: t.Final = REPO_ROOT / "tests" / "js" / "browser_sdk.html"
#: What the demo page is made of, as the server serves it.
DEMO_PATHS: t.Final = ("/", "/demo/static/demo.js", "/demo/static/demo.css")
EMAIL: t.Final = "viewer@example.com"
PASSWORD: t.Final = "viewer-password-1"
#: How Chromium's console names a failed request.
NET_ERROR: t.Final = "Failed to load resource: net::ERR_"
#: The demo page's summary once a list has loaded (subscribed first, then listed).
LOADED: t.Final = re.compile(r"^\d+ records?")


def _unavailable(reason: str | None) -> None:
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _unavailable(chromium_missing())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    data_dir = tmp_path_factory.mktemp("browser-data")
    env = {"REALTIME_SCHEMA": str(SCHEMA_FIXTURE), "REALTIME_DATA_DIR": str(data_dir)}
    with GunicornServer(workers=1, env=env) as started:
        status, body = api(
            started,
            "POST",
            "/api/collections/users/records",
            {"email": EMAIL, "password": PASSWORD, "passwordConfirm": PASSWORD},
        )
        assert status == 200, body
        yield started


@pytest.fixture
def page_errors() -> list[str]:
    """Script errors and console errors of the test's page (CSP and CORS refusals
    are console errors in Chromium); the page fixture fails the test on any left."""
    return []


@pytest.fixture
def page(browser: Browser, page_errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    opened = context.new_page()
    opened.on("pageerror", lambda exc: page_errors.append(f"page error: {exc}"))
    opened.on("console", lambda msg: page_errors.extend(console_errors(msg)))
    try:
        yield opened
        assert page_errors == []
    finally:
        context.close()


def console_errors(message: ConsoleMessage) -> list[str]:
    if message.type != "error":
        return []
    return [f"console error: {message.text} at {message.location.get('url')}"]


def api(
    server: GunicornServer, method: str, path: str, body: object = None, token: str = ""
) -> tuple[int, t.Any]:
    headers = {"Authorization": token} if token else {}
    return request_json(server.host, server.port, method, path, body, headers=headers)


def login(server: GunicornServer) -> str:
    status, body = api(
        server,
        "POST",
        "/api/collections/users/auth-with-password",
        {"identity": EMAIL, "password": PASSWORD},
    )
    assert status == 200, body
    return str(body["token"])


def served(server: GunicornServer, path: str) -> tuple[bytes, dict[str, str]]:
    """``path`` as the server serves it: body and the headers a copy must keep."""
    with urllib.request.urlopen(f"http://{server.host}:{server.port}{path}", timeout=10) as resp:
        assert resp.status == 200
        keep = ("Content-Type", "Content-Security-Policy", "X-Content-Type-Options")
        return resp.read(), {k: resp.headers[k] for k in keep if resp.headers[k]}


def demo_site(server: GunicornServer) -> StaticSite:
    """The demo page, byte for byte as the server serves it, on another origin."""
    return StaticSite({path: served(server, path) for path in DEMO_PATHS})


def demo_url(site: StaticSite, api_url: str, collection: str) -> str:
    query = urllib.parse.urlencode({"api": api_url, "collection": collection})
    return f"{site.url}/?{query}"


def row_of(page: Page, record_id: str) -> Locator:
    """The row of a record in either page (``#records li[data-id=...]``)."""
    return page.locator(f'#records li[data-id="{record_id}"]')


def expect_state(page: Page, state: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#state")).to_have_attribute("data-state", state, timeout=WAIT_MS)


def test_demo_page_shows_records_live_from_another_origin(
    server: GunicornServer, page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    shots = Screenshots(tmp_path / "screenshots")
    api_url = f"http://{server.host}:{server.port}"
    with demo_site(server) as site:
        assert site.url != api_url
        page.goto(demo_url(site, api_url, "public_posts"))
        expect_state(page, "live")
        expect(page.locator("#api")).to_have_text(api_url)
        expect(page.locator("#collection")).to_have_value("public_posts")
        shots.take(page, "guest-live")

        # As a guest, on a collection anyone may list.
        status, public = api(
            server, "POST", "/api/collections/public_posts/records", {"title": "hi"}
        )
        assert status == 200, public
        expect(row_of(page, public["id"])).to_contain_text("title: hi", timeout=WAIT_MS)
        shots.take(page, "guest-sees-create")

        # Log in (auth-with-password, cross-origin), then watch posts: only users may list them.
        page.get_by_label("E-mail").fill(EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#who")).to_contain_text(EMAIL, timeout=WAIT_MS)
        page.get_by_label("Collection", exact=True).select_option("posts")
        expect(page.locator("#summary")).to_have_text(LOADED, timeout=WAIT_MS)
        shots.take(page, "logged-in-posts")

        token = login(server)
        status, post = api(
            server, "POST", "/api/collections/posts/records", {"title": "first"}, token
        )
        assert status == 200, post
        row = row_of(page, post["id"])
        expect(row).to_contain_text("title: first", timeout=WAIT_MS)
        shots.take(page, "record-appears")

        path = f"/api/collections/posts/records/{post['id']}"
        status, body = api(server, "PATCH", path, {"title": "second"}, token)
        assert status == 200, body
        expect(row).to_contain_text("title: second", timeout=WAIT_MS)
        shots.take(page, "record-changes")

        status, body = api(server, "DELETE", path, None, token)
        assert status == 204, body
        expect(row).to_have_count(0, timeout=WAIT_MS)
        expect_state(page, "live")
        shots.take(page, "record-vanishes")

        # Logging out starts a new client (a logged-in one cannot become a guest).
        client_id = page.locator("#state").get_attribute("data-client-id")
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("#who")).to_contain_text("Guest", timeout=WAIT_MS)
        expect_state(page, "live")
        expect(page.locator("#state")).not_to_have_attribute("data-client-id", client_id or "")
        shots.take(page, "logged-out")
    assert len(shots.taken) == 7 and all(p.stat().st_size > 0 for p in shots.taken)


def test_demo_page_on_the_servers_own_origin(
    server: GunicornServer, page: Page, tmp_path: Path
) -> None:
    """Without ``?api=`` the page talks to the origin that served it."""
    from playwright.sync_api import expect

    shots = Screenshots(tmp_path / "screenshots")
    api_url = f"http://{server.host}:{server.port}"
    page.goto(f"{api_url}/?collection=public_posts")
    expect_state(page, "live")
    expect(page.locator("#api")).to_have_text(api_url)
    status, record = api(server, "POST", "/api/collections/public_posts/records", {"title": "own"})
    assert status == 200, record
    expect(row_of(page, record["id"])).to_contain_text("title: own", timeout=WAIT_MS)
    shots.take(page, "same-origin")


def test_realtime_preflight_from_the_pages_origin(server: GunicornServer) -> None:
    """What Chromium asks before the page's POST /api/realtime (JSON body, Authorization)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(
            "OPTIONS",
            "/api/realtime",
            headers={
                "Origin": "http://127.0.0.1:1",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 204
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    assert "POST" in (response.getheader("Access-Control-Allow-Methods") or "").split(",")
    assert response.getheader("Access-Control-Allow-Headers") == "authorization,content-type"


def test_demo_page_resumes_after_a_network_break(
    server: GunicornServer, page: Page, page_errors: list[str], tmp_path: Path
) -> None:
    """The stream is cut; the browser reconnects with Last-Event-ID and gets its
    client back (same id) with the record written while it was away."""
    from playwright.sync_api import expect

    shots = Screenshots(tmp_path / "screenshots")
    with CutProxy(server.port) as proxy, demo_site(server) as site:
        page.goto(demo_url(site, proxy.url, "public_posts"))
        expect_state(page, "live")
        status, seen = api(server, "POST", "/api/collections/public_posts/records", {"title": "a"})
        assert status == 200, seen
        expect(row_of(page, seen["id"])).to_have_count(1, timeout=WAIT_MS)
        client_id = page.locator("#state").get_attribute("data-client-id")
        assert client_id
        shots.take(page, "before-break")

        proxy.hold.set()
        assert proxy.cut() > 0
        expect_state(page, "reconnecting")
        status, missed = api(
            server, "POST", "/api/collections/public_posts/records", {"title": "while away"}
        )
        assert status == 200, missed
        shots.take(page, "reconnecting")

        proxy.hold.clear()
        expect_state(page, "resumed")
        expect(page.locator("#state")).to_have_attribute("data-client-id", client_id)
        expect(row_of(page, missed["id"])).to_contain_text("title: while away", timeout=WAIT_MS)
        shots.take(page, "resumed")
    # Chromium logs the cut stream and the refused reconnects; nothing else may show.
    page_errors[:] = [e for e in page_errors if not (NET_ERROR in e and "/api/realtime" in e)]


#: Servers whose clients cannot resume a break: (env, same client id after it, state text).
RESETS: t.Final = {
    # No resume grace: the reconnect gets a new client id.
    "new-client": ({"REALTIME_RESUME_GRACE": "0"}, False, ""),
    # The client comes back, but the log no longer reaches back: an RF_RESET frame.
    "history-lost": ({"REALTIME_HISTORY_SIZE": "1"}, True, "history_lost"),
}


@pytest.mark.parametrize("case", list(RESETS))
def test_demo_page_resets_when_its_client_cannot_be_resumed(
    browser: Browser, page: Page, page_errors: list[str], tmp_path: Path, case: str
) -> None:
    """The page shows reset, subscribes again when its client is new, and reloads
    the list, which has the records written during the break."""
    from playwright.sync_api import expect

    env, same_client, reason = RESETS[case]
    shots = Screenshots(tmp_path / "screenshots")
    with (
        GunicornServer(workers=1, env=env) as fresh,
        CutProxy(fresh.port) as proxy,
        demo_site(fresh) as site,
    ):
        page.goto(demo_url(site, proxy.url, "posts"))  # the default schema: public posts
        expect_state(page, "live")
        status, seen = api(fresh, "POST", "/api/collections/posts/records", {"title": "seen"})
        assert status == 200, seen
        expect(row_of(page, seen["id"])).to_have_count(1, timeout=WAIT_MS)
        client_id = page.locator("#state").get_attribute("data-client-id")
        assert client_id

        proxy.hold.set()
        assert proxy.cut() > 0
        expect_state(page, "reconnecting")
        missed = []
        for title in ("gap 1", "gap 2"):
            status, record = api(fresh, "POST", "/api/collections/posts/records", {"title": title})
            assert status == 200, record
            missed.append(record)

        proxy.hold.clear()
        expect_state(page, "reset")
        state = expect(page.locator("#state"))
        if same_client:
            state.to_have_attribute("data-client-id", client_id)
        else:
            state.not_to_have_attribute("data-client-id", client_id)
        if reason:
            state.to_contain_text(reason)
        for record in missed:
            expect(row_of(page, record["id"])).to_contain_text(record["title"], timeout=WAIT_MS)
        shots.take(page, "reset")

        status, after = api(fresh, "POST", "/api/collections/posts/records", {"title": "next"})
        assert status == 200, after
        expect(row_of(page, after["id"])).to_contain_text("title: next", timeout=WAIT_MS)
        shots.take(page, "live-after-reset")
    page_errors[:] = [e for e in page_errors if not (NET_ERROR in e and "/api/realtime" in e)]


def test_sdk_browser_bundle_subscribes_from_another_origin(
    server: GunicornServer, page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    _unavailable(
        None
        if SDK_BUNDLE.is_file()
        else f"the SDK's browser bundle is missing ({SDK_BUNDLE}; run `npm ci`)"
    )
    shots = Screenshots(tmp_path / "screenshots")
    files = {
        "/": (SDK_PAGE.read_bytes(), {"Content-Type": "text/html; charset=utf-8"}),
        "/pocketbase.umd.js": (SDK_BUNDLE.read_bytes(), {"Content-Type": "text/javascript"}),
    }
    with StaticSite(files) as site:
        query = urllib.parse.urlencode(
            {"api": f"http://{server.host}:{server.port}", "email": EMAIL, "password": PASSWORD}
        )
        page.goto(f"{site.url}/?{query}")
        expect_state(page, "subscribed")
        shots.take(page, "sdk-subscribed")

        token = login(server)
        status, post = api(
            server, "POST", "/api/collections/posts/records", {"title": "from urllib"}, token
        )
        assert status == 200, post
        row = row_of(page, post["id"])
        expect(row).to_have_text(f"create: {post['id']} from urllib", timeout=WAIT_MS)
        shots.take(page, "sdk-create")

        path = f"/api/collections/posts/records/{post['id']}"
        status, body = api(server, "PATCH", path, {"title": "changed"}, token)
        assert status == 200, body
        expect(row).to_have_text(f"update: {post['id']} changed", timeout=WAIT_MS)
        shots.take(page, "sdk-update")

        status, body = api(server, "DELETE", path, None, token)
        assert status == 204, body
        expect(row).to_have_count(0, timeout=WAIT_MS)
        shots.take(page, "sdk-delete")
