"""The pure core imports no framework: enforced, not hoped for."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

PURE = ["errors", "sse", "topics", "events", "rules", "schema"]
FRAMEWORKS = ("flask", "werkzeug", "gevent", "redis")


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_framework(module: str) -> None:
    code = (
        f"import sys, realtime_flask.{module}; "
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["manager", "broker", "config", "access", "store", "auth"])
def test_core_imports_no_flask_or_redis(module: str) -> None:
    code = (
        f"import sys, realtime_flask.{module}; "
        "print(sorted(m for m in ('flask', 'werkzeug', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_library_never_monkey_patches() -> None:
    code = (
        "import realtime_flask.app, realtime_flask.api.realtime, realtime_flask.serve, "
        "realtime_flask.gunicorn_hooks\n"
        "from gevent import monkey\n"
        "print(monkey.is_module_patched('socket'), monkey.is_module_patched('threading'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_public_names_resolve_lazily() -> None:
    import realtime_flask

    for name in realtime_flask.__all__:
        assert getattr(realtime_flask, name) is not None
    with pytest.raises(AttributeError):
        realtime_flask.nope  # noqa: B018


@pytest.mark.parametrize("module", ["redis_broker", "redis_cluster"])
def test_redis_modules_import_redis_only_when_used(module: str) -> None:
    code = f"import sys, realtime_flask.{module}; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


#: Modules allowed to import gevent: the one concurrency seam, and the two
#: server integrations (gevent's WSGI server, gunicorn's worker hooks) and the
#: CLI, which are entry points.
GEVENT_SEAM: t.Final[frozenset[str]] = frozenset(
    {"runtime.py", "serve.py", "gunicorn_hooks.py", "cli.py"}
)


def test_gevent_is_imported_only_behind_the_runtime_seam() -> None:
    package = Path(__file__).resolve().parent.parent / "realtime_flask"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] == "gevent" for name in names):
                relative = path.relative_to(package).as_posix()
                if relative not in GEVENT_SEAM:
                    offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []
