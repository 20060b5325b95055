"""docs/configuration.md lists exactly the settings of config.py, with their defaults:
a setting added, removed or changed in one place and not the other fails here."""

from __future__ import annotations

import re

from realtime_flask.config import DEFAULTS
from tests.support.env import REPO_ROOT

DOC = REPO_ROOT / "docs" / "configuration.md"

#: A table row of the reference: | `REALTIME_X` | default | unit | meaning |
ROW = re.compile(r"^\| `(REALTIME_[A-Z0-9_]+)` \| ([^|]+) \| ([^|]+) \| (.+) \|$")


def rows() -> list[tuple[str, str, str, str]]:
    found = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            key, default, unit, meaning = (part.strip() for part in match.groups())
            found.append((key, default, unit, meaning))
    return found


def shown(default: object) -> str:
    """A default as the reference (and the README's table) writes it."""
    if default == "":
        return "(empty)"
    return f"`{str(default).lower() if isinstance(default, bool) else default}`"


def test_every_setting_has_one_row_and_every_row_is_a_setting() -> None:
    keys = [key for key, *_ in rows()]
    assert len(keys) == len(set(keys)), "a setting documented twice"
    assert sorted(set(DEFAULTS) - set(keys)) == [], "settings of config.py missing from the doc"
    assert sorted(set(keys) - set(DEFAULTS)) == [], "rows for settings config.py does not have"


def test_every_name_the_doc_mentions_is_a_setting() -> None:
    mentioned = set(re.findall(r"REALTIME_[A-Z0-9_]*[A-Z0-9]", DOC.read_text(encoding="utf-8")))
    assert sorted(mentioned - set(DEFAULTS)) == []


def test_defaults_and_units_are_given() -> None:
    for key, default, unit, meaning in rows():
        assert default == shown(DEFAULTS[key]), key
        assert unit and meaning, key
        if isinstance(DEFAULTS[key], float):
            assert unit.startswith("s"), f"{key}: a float setting is in seconds"
        if isinstance(DEFAULTS[key], bool):
            assert unit == "flag", key
