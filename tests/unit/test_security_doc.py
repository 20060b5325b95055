"""``docs/security.md`` names, for each threat, the tests that cover it; every name
must be a test that exists, so the page cannot point at a renamed or deleted one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.env import REPO_ROOT

DOC = REPO_ROOT / "docs" / "security.md"
#: `unit/web/test_x.py`, `unit/web/test_x.py::test_y`, `unit/x.py::TestC::test_y`
REFERENCE = re.compile(r"`((?:unit|e2e)/[\w/]+\.py)((?:::\w+)*)`")


def defined(path: Path) -> set[str]:
    """``Class::test`` and ``test`` names defined in a test module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return names


def test_every_test_the_security_page_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    references = REFERENCE.findall(text)
    assert len(references) >= 20
    missing = []
    for module, names in references:
        path = REPO_ROOT / "tests" / module
        if not path.is_file():
            missing.append(module)
            continue
        name = names.removeprefix("::")
        if name and name not in defined(path):
            missing.append(f"{module}{names}")
    assert missing == []
