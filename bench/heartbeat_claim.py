"""Heartbeat cost vs the number of registered flows, measured in one run.

Part 1 — one heartbeat with 10 due flows among 100 registered vs among 10,000 registered, on
each database. Every registered flow is scheduled (it has a pending run, due later), so a
claim that scanned the flows or their pending runs would slow down with their number.
Target: at most 2x (the claim query walks the (status, due_at) index to the due runs only).

Part 2 (``--runs N``) — the web's queries with 10,000 flows and N finished runs: a page of
flows, a page of a flow's runs, a page of all runs, and the dashboard's metrics.

    python3 dev.py bench heartbeat_claim [--repeat 15] [--databases sqlite,postgresql,mariadb]
                                         [--runs 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from active_data_flow.runtimes.heartbeat import FlowStore, beat
from active_data_flow.runtimes.heartbeat.store.models import flows, runs

# The benchmark plays the application: its stored flows use the memory connectors, which
# specs from the store may use only when allowed (here and in the workers it starts).
os.environ.setdefault("ADF_UNTRUSTED_CONNECTORS", "memory")

SERVERS = {
    "postgresql": os.environ.get("ADF_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432"),
    "mariadb": os.environ.get("ADF_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306"),
}
DUE = 10
SPEC: dict[str, Any] = {
    "source": {"type": "memory", "config": {"records": []}},
    "sinks": [{"type": "memory", "config": {"name": "bench-heartbeat"}}],
    "runtime": {"type": "heartbeat", "config": {"interval": 3600.0}},
}


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database of ``kind`` (dropped afterwards)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.sqlite3"
        return
    name = f"adf_bench_{uuid.uuid4().hex[:10]}"
    admin_db = "test"
    suffix = "?charset=utf8mb4" if kind == "mariadb" else ""
    admin = sa.create_engine(f"{SERVERS[kind]}/{admin_db}{suffix}", isolation_level="AUTOCOMMIT",
                             poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVERS[kind]}/{name}{suffix}"
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()


def register(store: FlowStore, count: int) -> None:
    """Bulk-register ``count`` scheduled flows, each with a pending run due in an hour."""
    now = store.now()
    later = now + timedelta(hours=1)
    with store.engine.begin() as conn:
        for start in range(0, count, 2000):
            conn.execute(flows.insert(), [{
                "name": f"flow_{i:05d}", "origin": "spec", "status": "active",
                "spec": {**SPEC, "name": f"flow_{i:05d}"}, "spec_hash": "bench",
                "created_at": now, "updated_at": now}
                for i in range(start, min(count, start + 2000))])
        ids = list(conn.execute(sa.select(flows.c.id).order_by(flows.c.id)).scalars())
        for start in range(0, count, 2000):
            conn.execute(runs.insert(), [{
                "flow_id": i, "status": "pending", "live_flow_id": i, "trigger": "schedule",
                "due_at": later, "attempt": 0, "created_at": now}
                for i in ids[start:start + 2000]])


def make_due(store: FlowStore, count: int) -> None:
    """Time travel: ``count`` pending runs become due."""
    with store.engine.begin() as conn:
        due = list(conn.execute(sa.select(runs.c.id).where(runs.c.status == "pending")
                                .order_by(runs.c.id).limit(count)).scalars())
        conn.execute(runs.update().where(runs.c.id.in_(due)).values(
            due_at=store.now() - timedelta(seconds=1)))


def time_beats(url: str, registered: int, repeat: int) -> float:
    """Median seconds of one heartbeat that claims and runs DUE of ``registered`` flows."""
    store = FlowStore(url, auto_upgrade=True)
    try:
        register(store, registered)
        samples = []
        for i in range(repeat + 2):
            make_due(store, DUE)
            start = time.perf_counter()
            summary = beat(store, worker_id="bench")
            elapsed = time.perf_counter() - start
            assert len(summary.succeeded) == DUE, summary
            if i >= 2:  # two warm-up beats: connection pool, statement caches
                samples.append(elapsed)
        return statistics.median(samples)
    finally:
        store.close()


def part1(kinds: list[str], repeat: int) -> None:
    print(f"\nOne heartbeat, {DUE} due flows (claim + run them), median of {repeat}")
    print(f"{'database':<12}{'100 flows':>12}{'10,000 flows':>15}{'ratio':>8}{'target':>9}")
    for kind in kinds:
        with database(kind) as small, database(kind) as large:
            few = time_beats(small, 100, repeat)
            many = time_beats(large, 10_000, repeat)
        verdict = "ok" if many / few <= 2 else "MISSED"
        print(f"{kind:<12}{few * 1000:>10.1f}ms{many * 1000:>13.1f}ms{many / few:>7.2f}x"
              f"{'<= 2x':>9} {verdict}")


def add_runs(store: FlowStore, count: int) -> None:
    """``count`` finished runs spread over the flows (bulk insert)."""
    now = store.now()
    with store.engine.begin() as conn:
        ids = list(conn.execute(sa.select(flows.c.id)).scalars())
        for start in range(0, count, 5000):
            conn.execute(runs.insert(), [{
                "flow_id": ids[i % len(ids)], "status": "succeeded" if i % 10 else "failed",
                "trigger": "schedule", "due_at": now, "attempt": 1, "started_at": now,
                "ended_at": now, "read": 10, "written": 10, "duration_s": 0.1,
                "created_at": now} for i in range(start, min(count, start + 5000))])


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def part2(kinds: list[str], run_count: int, repeat: int) -> None:
    print(f"\nWeb queries with 10,000 flows and {run_count:,} runs, median of {repeat}")
    print(f"{'database':<12}{'flows page':>12}{'flow runs':>12}{'all runs':>12}"
          f"{'failed runs':>13}{'metrics':>10}{'stats':>9}")
    for kind in kinds:
        with database(kind) as url:
            figures = web_figures(url, run_count, repeat)
        print(f"{kind:<12}" + "".join(f"{f:>10.1f}ms" for f in figures[:4])
              + f"{figures[4]:>8.1f}ms{figures[5]:>7.1f}ms")


def web_figures(url: str, run_count: int, repeat: int) -> list[float]:
    store = FlowStore(url, auto_upgrade=True)
    try:
        register(store, 10_000)
        add_runs(store, run_count)
        return [
            median_ms(lambda: store.list_flows(offset=5000, limit=50), repeat),
            median_ms(lambda: store.list_runs("flow_04242", limit=50), repeat),
            median_ms(lambda: store.list_runs(limit=50), repeat),
            median_ms(lambda: store.list_runs(status="failed", limit=50), repeat),
            median_ms(store.metrics, repeat),
            median_ms(lambda: store.flow_stats("flow_04242"), repeat),
        ]
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--databases", default="sqlite,postgresql,mariadb")
    parser.add_argument("--runs", type=int, default=0,
                        help="also time the web's queries over this many runs")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    part1(kinds, args.repeat)
    if args.runs:
        part2(kinds, args.runs, max(5, args.repeat // 3))


if __name__ == "__main__":
    main()
