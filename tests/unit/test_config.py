from __future__ import annotations

import pytest

from realtime_flask.config import DEFAULTS
from realtime_flask.config import DOCS
from realtime_flask.config import Settings
from realtime_flask.config import env_overrides
from realtime_flask.config import markdown_table
from realtime_flask.errors import ConfigError
from tests.support.env import REPO_ROOT

README = REPO_ROOT / "README.md"


def test_every_key_is_documented_and_in_the_readme() -> None:
    assert set(DOCS) == set(DEFAULTS)
    assert markdown_table() in README.read_text(encoding="utf-8")


def test_defaults() -> None:
    s = Settings.from_mapping({})
    assert s.idle_timeout == 300.0
    assert s.max_lifetime == 1800.0
    assert s.keepalive_interval == 15.0
    assert s.queue_size == 512
    assert s.max_subscriptions == 1000
    assert s.max_topic_length == 2500
    assert s.reaper_enabled is True
    assert s.reaper_interval == 5.0
    assert s.cors_origin == "*"
    assert s.publish_secret == ""
    assert (s.host, s.port) == ("127.0.0.1", 8090)


def test_strings_from_the_environment_are_parsed() -> None:
    env = {
        "REALTIME_IDLE_TIMEOUT": "60",
        "REALTIME_QUEUE_SIZE": "16",
        "REALTIME_REAPER_ENABLED": "false",
        "REALTIME_PORT": "9000",
        "HOME": "/root",
    }
    overrides = env_overrides(env)
    assert "HOME" not in overrides
    s = Settings.from_mapping(overrides)
    assert (s.idle_timeout, s.queue_size, s.reaper_enabled, s.port) == (60.0, 16, False, 9000)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("REALTIME_IDLE_TIMEOUT", "soon", "must be a number"),
        ("REALTIME_IDLE_TIMEOUT", -1, "must be >="),
        ("REALTIME_IDLE_TIMEOUT", float("nan"), "finite"),
        ("REALTIME_QUEUE_SIZE", 0, "must be >="),
        ("REALTIME_QUEUE_SIZE", 1.5, "whole number"),
        ("REALTIME_QUEUE_SIZE", True, "must be a number"),
        ("REALTIME_REAPER_ENABLED", "maybe", "boolean"),
        ("REALTIME_PORT", 70000, "<= 65535"),
        ("REALTIME_CORS_ORIGIN", 5, "string"),
        ("REALTIME_KEEPALIVE_INTERVAL", 400, "shorter than REALTIME_IDLE_TIMEOUT"),
        ("REALTIME_IDEL_TIMEOUT", 5, "unknown setting"),
    ],
)
def test_bad_values_fail_at_start_up(key: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Settings.from_mapping({key: value})


def test_create_app_validates_config() -> None:
    from realtime_flask.web.app import create_app

    with pytest.raises(ConfigError):
        create_app({"REALTIME_QUEUE_SIZE": -5, "REALTIME_DATA_DIR": ":memory:"})
