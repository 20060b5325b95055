"""The live demo page (``web/demo.py``): served by the standalone service only.

What the page does in a browser is tested in tests/e2e/test_browser.py; here:
what is served, with which headers, and that the markup labels every control.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient

from realtime_flask import Realtime
from realtime_flask.web.app import create_app
from realtime_flask.web.demo import CONTENT_SECURITY_POLICY
from realtime_flask.web.state import get_state
from tests.support.env import SCHEMA_FIXTURE
from tests.support.env import TEST_CONFIG

ORIGIN = {"Origin": "http://page.test"}


@pytest.fixture
def client() -> Iterator[FlaskClient]:
    app = create_app({**TEST_CONFIG, "REALTIME_SCHEMA": str(SCHEMA_FIXTURE)})
    yield app.test_client()
    get_state(app).shutdown()


class Controls(HTMLParser):
    """Ids of form controls, ``for`` targets of labels, and script/style URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []
        self.labelled: set[str] = set()
        self.assets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("input", "select", "textarea"):
            self.controls.append(found.get("id") or "")
        elif tag == "label" and found.get("for"):
            self.labelled.add(found["for"] or "")
        elif tag == "script" and found.get("src"):
            self.assets.append(found["src"] or "")
        elif tag == "link" and found.get("rel") == "stylesheet":
            self.assets.append(found.get("href") or "")


def test_root_serves_the_page_with_its_policy(client: FlaskClient) -> None:
    with client.get("/") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/html"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert b'id="state" role="status"' in response.data


def test_every_control_has_a_label_and_every_asset_is_served(client: FlaskClient) -> None:
    parsed = Controls()
    with client.get("/") as page:
        parsed.feed(page.get_data(as_text=True))
    assert parsed.controls and "" not in parsed.controls
    assert set(parsed.controls) <= parsed.labelled
    types = {"demo/static/demo.js": "text/javascript", "demo/static/demo.css": "text/css"}
    assert sorted(parsed.assets) == sorted(types)
    for asset, mimetype in types.items():
        with client.get("/" + asset) as response:
            assert response.status_code == 200, asset
            assert response.mimetype == mimetype


def test_collections_lists_names_and_types_only(client: FlaskClient) -> None:
    response = client.get("/demo/collections", headers=ORIGIN)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    items = response.get_json()["items"]
    assert [(c["name"], c["type"]) for c in items][:3] == [
        ("users", "auth"),
        ("posts", "base"),
        ("public_posts", "base"),
    ]
    assert all(set(c) == {"id", "name", "type"} for c in items)
    assert items[0]["id"] == "_pb_users_auth_"


def test_an_unknown_demo_file_is_pocketbases_404(client: FlaskClient) -> None:
    response = client.get("/demo/static/nope.js")
    assert response.status_code == 404
    assert response.get_json() == {"data": {}, "message": "File not found.", "status": 404}


def test_the_extension_does_not_serve_the_page() -> None:
    app = Flask("user_app")
    app.config.update(TEST_CONFIG)
    Realtime(app)
    try:
        assert app.test_client().get("/").status_code == 404
        assert app.test_client().get("/demo/collections").status_code == 404
    finally:
        get_state(app).shutdown()


@pytest.mark.parametrize(
    ("query", "location"),
    [
        ("api=https://evil.example&collection=posts", "/?collection=posts"),
        ("api=http://localhost:9999", "/"),
    ],
)
def test_the_services_own_page_drops_an_api_of_another_origin(
    client: FlaskClient, query: str, location: str
) -> None:
    """A link to this origin's page must not make it send a login (which the browser
    fills in for this origin) elsewhere; a copy of the page on another origin may."""
    response = client.get(f"/?{query}")
    assert (response.status_code, response.headers["Location"]) == (302, location)
    own = client.get("/?api=http://localhost/&collection=posts")  # this origin: kept
    assert own.status_code == 200
    own.close()
