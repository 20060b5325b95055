"""``python -m realtime_flask serve``: one line, not a traceback, when the service
cannot be set up; with ``--workers 2`` a real gunicorn arbiter with two gevent
workers that serves realtime and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.entry_points import EntryPoint
from tests.support.entry_points import check_realtime_round_trip
from tests.support.entry_points import clean_env
from tests.support.redis_server import RedisServer
from tests.support.servers import REPO_ROOT
from tests.support.servers import wait_until


def serve_until_it_stops(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m realtime_flask serve`` that is expected to stop at start-up."""
    return subprocess.run(
        [sys.executable, "-m", "realtime_flask", "serve", "--port", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_with_a_bad_schema_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    env = clean_env({"REALTIME_DATA_DIR": str(tmp_path), "REALTIME_SCHEMA": str(missing)})
    result = serve_until_it_stops(env)
    # Status 2 (bad input), as `python wsgi.py` answers; it was 1 before the click CLI.
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: cannot read schema file {str(missing)!r}")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_serve_with_a_bad_field_type_names_collection_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "schema.json"
    bad.write_text(json.dumps([{"name": "posts", "fields": [{"name": "x", "type": "nope"}]}]))
    env = clean_env({"REALTIME_DATA_DIR": str(tmp_path), "REALTIME_SCHEMA": str(bad)})
    result = serve_until_it_stops(env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: collection 'posts', field 'x': unknown type 'nope'")


@pytest.mark.e2e
def test_serve_in_process_round_trip_and_a_quiet_exit(tmp_path: Path) -> None:
    server = EntryPoint(
        "python -m realtime_flask serve",
        lambda port: [sys.executable, "-m", "realtime_flask", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=lambda port: clean_env({"REALTIME_DATA_DIR": str(tmp_path)}),
    )
    with server:
        check_realtime_round_trip(server)  # ends with SIGTERM and exit status 0
        # Nothing printed at exit (a lock made before the monkey-patch printed
        # "Exception ignored ... Traceback" from logging's shutdown).
        log = server.log_tail(200)
        assert "Traceback" not in log and "Exception ignored" not in log, log


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def children_of(pid: int) -> set[int]:
    """The PIDs whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.add(int(text.split(" ", 1)[0]))
    return found


@pytest.mark.e2e
@pytest.mark.redis
def test_serve_with_two_workers_runs_gunicorn_with_two_gevent_workers(
    tmp_path: Path, redis: RedisServer
) -> None:
    server = EntryPoint(
        "python -m realtime_flask serve --workers 2",
        lambda port: [
            sys.executable,
            "-m",
            "realtime_flask",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
        ],
        cwd=tmp_path,  # no gunicorn.conf.py here: serve brings its own settings
        env=lambda port: clean_env(
            {"REALTIME_DATA_DIR": str(tmp_path), "REALTIME_REDIS_URL": redis.url}
        ),
    )
    with server:
        assert server.proc is not None
        master = server.proc.pid

        def booted() -> set[int]:
            return {
                int(p) for p in re.findall(r"Booting worker with pid: (\d+)", server.log_tail(200))
            }

        wait_until(lambda: len(booted()) == 2, 20, message=lambda: server.log_tail())
        # The PID we started is gunicorn's arbiter; its two children are the workers it booted.
        workers = booted()
        assert children_of(master) == workers, server.log_tail()
        log = server.log_tail(200)
        assert "Using worker: gevent" in log, log
        assert f"Listening at: http://127.0.0.1:{server.port}" in log, log
        # Realtime round trip across the workers, then SIGTERM to the arbiter: the
        # stream ends cleanly and the arbiter exits 0.
        check_realtime_round_trip(server)
        # The arbiter exited 0 after its workers: none of them is left running.
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], server.log_tail()
