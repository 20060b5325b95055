"""The layout is the architecture: imports point one way, enforced, not hoped for.

Layers, lowest first (DESIGN.md, docs/architecture.md)::

    errors                              the error tree
    config                              settings: plain data, no IO
    core/          runtime.py           pure logic  |  the one gevent seam
    engine/                             one process: clients, manager, brokers' interface
    cluster/       store/               Redis edge  |  SQLite edge (siblings: never each other)
    web/                                the only Flask-aware code
    server/                             entry points: gevent's server, gunicorn's hooks
    cli.py  __main__.py                 the command line

``testing.py`` (an SSE client for tests) sits just above core/.

A module may import its own folder and any lower layer, never a higher one or
a sibling; the package imports no module in a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

PACKAGE: t.Final = Path(__file__).resolve().parents[2] / "realtime_flask"

#: Layer of each top-level module or folder of the package.
LAYERS: t.Final[dict[str, int]] = {
    "errors": 0,
    "config": 1,
    "core": 2,
    "runtime": 2,
    "engine": 3,
    "testing": 3,
    "cluster": 4,
    "store": 4,
    "web": 5,
    "server": 6,
    "cli": 7,
    "__main__": 8,
}
#: Third-party packages each part may import (anything not listed: stdlib or nanoid/jwt).
FRAMEWORK_HOMES: t.Final[dict[str, frozenset[str]]] = {
    "gevent": frozenset({"runtime", "server", "cli"}),
    "redis": frozenset({"cluster"}),
    "flask": frozenset({"web", "server", "cli"}),
    "werkzeug": frozenset({"web", "server", "cli"}),
    "sqlite3": frozenset({"store"}),
    "prometheus_client": frozenset({"web", "server"}),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module ``name`` imports (at any depth: function-level imports count), with lines."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, node.lineno))
            # ``from pkg import module`` imports the module too.
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def internal_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        if name == "realtime_flask":
            continue  # the lazy public API re-exports from everywhere by design
        for target, _ in imports_of(name, path):
            if target in known and target != name and target != "realtime_flask":
                graph[name].add(target)
    return graph


def part(name: str) -> str:
    return name.split(".")[1]


def test_every_part_has_a_layer() -> None:
    assert len(modules()) > 20, PACKAGE  # the walk found the package
    parts = {part(name) for name in modules() if name != "realtime_flask"}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_imports_point_down_never_up_or_sideways() -> None:
    offenders = []
    for name, targets in internal_graph().items():
        if name == "realtime_flask":
            continue
        for target in targets:
            mine, theirs = part(name), part(target)
            if mine == theirs:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                offenders.append(f"{name} -> {target}")
    assert offenders == []


def test_no_import_cycle() -> None:
    graph = internal_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_frameworks_are_imported_only_in_their_layer() -> None:
    offenders = []
    for name, path in modules().items():
        if name == "realtime_flask":
            continue
        for target, line in imports_of(name, path):
            top = target.split(".")[0]
            homes = FRAMEWORK_HOMES.get(top)
            if homes is not None and part(name) not in homes:
                offenders.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert offenders == []


def test_no_module_over_800_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 800
    }
    assert long == {}


PURE: t.Final = sorted(name for name in modules() if name.startswith("realtime_flask.core"))


@pytest.mark.parametrize("module", PURE)
def test_core_loads_no_framework_at_run_time(module: str) -> None:
    frameworks = ("flask", "werkzeug", "gevent", "redis", "sqlite3")
    code = f"import sys, {module}; print(sorted(m for m in {frameworks!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    ["realtime_flask.engine.manager", "realtime_flask.store.records", "realtime_flask.config"],
)
def test_below_the_web_layer_nothing_loads_flask_or_redis(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('flask', 'werkzeug', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_library_never_monkey_patches() -> None:
    code = (
        "import realtime_flask.web.app, realtime_flask.web.api.realtime\n"
        "import realtime_flask.server.serve, realtime_flask.server.gunicorn_hooks\n"
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


@pytest.mark.parametrize(
    "module",
    [
        "realtime_flask.cluster.broker",
        "realtime_flask.cluster.router",
        "realtime_flask.cluster._redis",
    ],
)
def test_redis_is_imported_only_when_used(module: str) -> None:
    code = f"import sys, {module}; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
