"""The error tree: one home, PocketBase's body for each, statuses as PocketBase answers."""

from __future__ import annotations

import ast
import inspect
import typing as t
from pathlib import Path

import pytest

from realtime_flask import errors

PACKAGE: t.Final = Path(errors.__file__).resolve().parent
#: Exceptions defined outside errors.py, each for a reason its module states.
ELSEWHERE: t.Final = {
    "RuleError",  # core.rules: the filter language's errors (a BadRequest)
    "RuleSyntaxError",
    "RuleResolveError",
    "SchemaError",  # core.schema: a schema file that does not load (a ConfigError)
    "QueueClosed",  # runtime: a signal between a stream and its queue
    "RuntimeUnavailable",  # runtime: gevent missing where it is required
}

TREE: t.Final = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.RealtimeError)
]


@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_each_error_gives_pocketbase_body(cls: type[errors.RealtimeError]) -> None:
    body = cls().to_body()
    assert set(body) == {"status", "message", "data"}
    assert body["status"] == cls.status_hint and body["data"] == {}
    assert isinstance(body["message"], str) and body["message"]
    detailed = cls("Nope.", {"title": {"code": "validation_required"}}).to_body()
    assert detailed["message"] == "Nope." and detailed["data"] == {
        "title": {"code": "validation_required"}
    }


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (errors.BadRequest, 400),
        (errors.QueryTimeout, 400),
        (errors.RelationRequired, 400),
        (errors.ValidationFailed, 400),
        (errors.InvalidEvent, 400),
        (errors.Unauthorized, 401),
        (errors.Forbidden, 403),
        (errors.AccessDenied, 403),
        (errors.NotFound, 404),
        (errors.MissingCollection, 404),
        (errors.ClientNotFound, 404),
        (errors.TooManyClients, 429),
        (errors.StoreBusy, 503),
        (errors.BrokerUnavailable, 503),
    ],
)
def test_statuses(cls: type[errors.RealtimeError], status: int) -> None:
    assert cls.status_hint == status


def test_the_docstring_draws_every_class() -> None:
    doc = errors.__doc__ or ""
    assert [cls.__name__ for cls in TREE if cls.__name__ not in doc] == []


def is_error_name(name: str) -> bool:
    return name.endswith(("Error", "Exception")) or name in {c.__name__ for c in TREE}


def test_no_error_class_is_defined_elsewhere() -> None:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and is_error_name(base.id) for base in node.bases
            ):
                found.add(f"{relative}:{node.name}")
    assert {name.split(":")[1] for name in found} == ELSEWHERE, sorted(found)
