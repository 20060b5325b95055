"""Compare two results files of ``bench/run.py`` made by two source trees (an A/B).

Usage::

    .venv/bin/python bench/compare.py BEFORE.jsonl AFTER.jsonl

Run the same scenarios from two checkouts (``git worktree add``), alternating
them, each with its own ``--results`` file; this prints, per scenario, server
and N, the median of every run's metric in each file, the ratio after/before,
and how many runs each median is over.  Medians, because a p99 of a 10-second
window rests on a few events and moves by tens of percent from run to run on
the same code; the spread (min-max) is printed for the same reason.

Rows: ``fanout``/``owner`` (p50, p99, deliveries/s, server CPU per delivery),
``idle`` (RSS after the streams: the per-stream figure subtracts a start-up
RSS that moves with import-time work, so the total is the fair one to compare),
``ceiling`` (the highest rate whose p99 stayed under 1 s), ``records`` (p50, p99).
Stdlib only.
"""

from __future__ import annotations

import json
import statistics
import sys
import typing as t
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

Json = dict[str, t.Any]
Key = tuple[str, str, str, str]  # scenario, server, n or op, metric

METRICS: dict[str, list[tuple[str, Callable[[Json], float]]]] = {
    "fanout": [
        ("p50 ms", lambda x: x["latency_ms"]["p50"]),
        ("p99 ms", lambda x: x["latency_ms"]["p99"]),
        ("deliveries/s", lambda x: x["deliveries_per_s"]),
        ("server CPU µs/delivery", lambda x: x["server_cpu_us_per_delivery"]),
    ],
    "owner": [
        ("p50 ms", lambda x: x["latency_ms"]["p50"]),
        ("p99 ms", lambda x: x["latency_ms"]["p99"]),
        ("server CPU ms/event", lambda x: x["server_cpu_ms_per_event"]),
    ],
    "idle": [
        ("RSS MiB with the streams", lambda x: x["rss_kib"] / 1024),
        ("setup s", lambda x: x["setup_s"]),
    ],
    "records": [
        ("p50 ms", lambda x: x["p50_ms"]),
        ("p99 ms", lambda x: x["p99_ms"]),
    ],
}


def ceiling(lines: list[Json]) -> dict[tuple[str, str], list[float]]:
    """Per (server, N), one value per run: the highest rate whose p99 stayed
    within 1 s with everything delivered."""
    best: dict[tuple[str, str, str], float] = {}
    for x in lines:
        if x.get("scenario") != "ceiling" or "latency_ms" not in x:
            continue
        held = x["latency_ms"]["p99"] <= 1000 and x["delivered_fraction"] >= 1.0
        key = (x["server"], str(x.get("n", "")), x["run_id"])
        if held:
            best[key] = max(best.get(key, 0.0), float(x["rate"]))
        else:
            best.setdefault(key, 0.0)
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (server, n, _run), rate in best.items():
        out[(server, n)].append(rate)
    return out


def collect(path: Path) -> dict[Key, list[float]]:
    lines = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    values: dict[Key, list[float]] = defaultdict(list)
    for x in lines:
        scenario = x.get("scenario", "")
        if "error" in x or scenario not in METRICS:
            continue
        if scenario == "idle" and x.get("failed"):
            continue
        where = x["op"] if scenario == "records" else str(x.get("n", ""))
        for name, get in METRICS[scenario]:
            values[(scenario, x["server"], where, name)].append(float(get(x)))
    for (server, n), rates in ceiling(lines).items():
        values[("ceiling", server, n, "highest rate held (events/s)")].extend(rates)
    return values


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    before, after = collect(Path(argv[1])), collect(Path(argv[2]))
    print(
        "| scenario | server | N / op | metric | before (median, min-max, runs) "
        "| after (median, min-max, runs) | after / before |"
    )
    print("|---|---|---|---|---|---|---:|")
    for key in sorted(set(before) & set(after)):
        b, a = before[key], after[key]
        mb, ma = statistics.median(b), statistics.median(a)
        ratio = f"{ma / mb:.2f}x" if mb else "-"

        def cell(v: list[float], m: float) -> str:
            return f"{m:,.2f} ({min(v):,.2f}-{max(v):,.2f}, {len(v)})"

        print(f"| {' | '.join(key)} | {cell(b, mb)} | {cell(a, ma)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
