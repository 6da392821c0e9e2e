"""Celery runtime scale-out: two parts, each measured against its reference in the same run.

Part 1 — I/O-bound: a source that waits 20 ms per page of 1,000 rows (as a remote API would),
copied into PostgreSQL, split into 8 partitions: 1 worker process vs 4 worker processes (two
``adf celery-worker -c 2`` nodes). Target: at least 3.5x faster with 4.

Part 2 — CPU-bound: 1,000,000 rows copied PostgreSQL -> PostgreSQL: the inline runtime (this
process) vs 2 worker processes with 2 partitions each. On a 2-core machine the database
server shares the cores, so the target is overhead, not speedup: CPU per row within 1.15x of
inline, and wall time no worse. CPU is measured for the flow's own processes (this one for
inline; the worker processes for Celery) and for the whole machine (which includes
PostgreSQL); saturation is the machine's busy CPU over wall time x cores.

    python3 bench/celery_scale.py [--part io|cpu|both] [--broker redis://127.0.0.1:6379/9]
                                  [--rows 1000000]

Needs PostgreSQL on 127.0.0.1:5432 (trust, database ``test``) and the broker. Workers import
this file (ADF_FLOWS) for its models, so its top level stays light.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from active_data_flow.connectors.sqlalchemy import register_database, register_models
from active_data_flow.runtimes.celery.testing import RangeSource

# The benchmark plays the application: its stored flows use the memory and range connectors,
# which specs from the store may use only when allowed (here and in the workers it starts).
os.environ.setdefault("ADF_UNTRUSTED_CONNECTORS", "memory,range")

ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "ADF_BENCH_DATA_URL"
PG = os.environ.get("ADF_TEST_PG", "127.0.0.1:5432")


class Base(DeclarativeBase):
    pass


class BenchSource(Base):
    __tablename__ = "bench_source"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    qty: Mapped[int]
    sku: Mapped[str]
    price: Mapped[float]


class BenchTarget(Base):
    __tablename__ = "bench_target"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    qty: Mapped[int]
    sku: Mapped[str]
    price: Mapped[float]


class ApiRows(Base):
    """Where part 1 lands: UNLOGGED (no WAL, no fsync per batch), so the flow's own CPU and
    the database's stay small next to the source's waits: the flow is I/O-bound, as asked."""

    __tablename__ = "bench_api_rows"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    v: Mapped[str]


register_models(Base)
if os.environ.get(DATA_ENV):
    register_database("bench", os.environ[DATA_ENV])
__all__ = ["RangeSource"]  # imported for its registration (type "range") in the workers


# -- the environment -------------------------------------------------------------------
def admin(statement: str) -> None:
    engine = sa.create_engine(f"postgresql+psycopg://postgres@{PG}/test",
                              isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


@dataclass
class Worker:
    popen: subprocess.Popen[bytes]
    log: Path

    def processes(self) -> list[Any]:
        import psutil  # type: ignore[import-untyped]

        try:
            root = psutil.Process(self.popen.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> float:
        total = 0.0
        for proc in self.processes():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except Exception:  # a pool process that just exited
                continue
        return total

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(10)
                return
            except subprocess.TimeoutExpired:
                continue


def start_workers(n: int, concurrency: int, env: dict[str, str], queue: str,
                  tmp: Path) -> list[Worker]:
    adf = str(Path(sys.executable).parent / "adf")
    workers = []
    for i in range(n):
        log = tmp / f"worker-{queue}-{i}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [adf, "celery-worker", "-Q", queue, "-c", str(concurrency), "-n",
                 f"bench{i}-{queue}@%h", "-l", "WARNING"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        workers.append(Worker(popen, log))
    time.sleep(1.0)
    deadline = time.monotonic() + 60
    for w in workers:  # ready when every pool process is up
        while len(w.processes()) < concurrency + 1:
            if w.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker failed to start:\n{w.log.read_text()[-3000:]}")
            time.sleep(0.1)
    time.sleep(1.5)  # let them connect and start consuming
    return workers


def machine_busy() -> float:
    import psutil

    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0)
                 + getattr(t, "softirq", 0))


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Measure:
    label: str
    rows: int
    wall: float
    cpu: float
    machine: float
    partitions: int = 1

    @property
    def rate(self) -> float:
        return self.rows / self.wall

    def per_100k(self, seconds: float) -> float:
        return seconds / self.rows * 100_000

    @property
    def saturation(self) -> float:
        return self.machine / (self.wall * (os.cpu_count() or 1))


# -- running a stored Celery flow ------------------------------------------------------
def run_celery(store: Any, name: str, workers: list[Worker]) -> tuple[float, float, float, int]:
    """Trigger ``name``, dispatch it, wait for the end: (wall, CPU of the workers and of the
    dispatch, machine CPU, partitions)."""
    from active_data_flow.runtimes.heartbeat import beat

    workers_cpu0, self0, busy0 = sum(w.cpu() for w in workers), self_cpu(), machine_busy()
    started = datetime.now(UTC)
    run = store.trigger(name)
    beat(store)  # the heartbeat's claim and dispatch count; waiting for the end does not
    dispatch_cpu = self_cpu() - self0
    while (record := store.get_run(run.id)).ended_at is None:
        time.sleep(0.1)
    assert record.ended_at is not None
    wall = (record.ended_at - started).total_seconds()  # the end as the store recorded it
    cpu = sum(w.cpu() for w in workers) - workers_cpu0 + dispatch_cpu
    busy = machine_busy() - busy0
    if record.status != "succeeded":
        raise SystemExit(f"run {run.id} {record.status}: {record.error}")
    return wall, cpu, busy, len(store.list_partitions(run.id))


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        n = int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
    engine.dispose()
    return n


def truncate(url: str, table: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {table}")
    engine.dispose()


# -- part 1: I/O-bound -----------------------------------------------------------------
SINKS = {
    "postgresql": {"type": "sqlalchemy", "config": {"model": "ApiRows", "database": "bench"}},
    "none": {"type": "memory", "config": {}},  # each worker's memory: no CPU beyond the flow
}


def io_bound(ctx: Context, rows: int, sink: str) -> list[Measure]:
    name = f"api_copy_{sink}"
    spec = {
        "name": name,
        "source": {"type": "range", "config": {"stop": rows, "wait": 0.02, "every": 1000}},
        "sink": SINKS[sink],
        "runtime": {"type": "celery", "config": {"queue": ctx.queue, "partitions": 8}},
        "batch_size": 1000,
    }
    ctx.store.create_flow(spec)
    results = []
    for label, nodes, concurrency in ((f"{sink}: 1 process", 1, 1),
                                      (f"{sink}: 4 processes", 2, 2)):
        workers = start_workers(nodes, concurrency, ctx.env, ctx.queue, ctx.tmp)
        best: Measure | None = None
        try:
            for _ in range(ctx.repeat):  # the machine is shared: keep the best of a few
                truncate(ctx.url, "bench_api_rows")
                ctx.store.reset_cursor(name)
                wall, cpu, busy, parts = run_celery(ctx.store, name, workers)
                if sink == "postgresql":
                    assert count(ctx.url, "bench_api_rows") == rows
                if best is None or wall < best.wall:
                    best = Measure(label, rows, wall, cpu, busy, parts)
        finally:
            for w in workers:
                w.stop()
        assert best is not None
        results.append(best)
    return results


# -- part 2: CPU-bound -----------------------------------------------------------------
def fill_source(url: str, rows: int) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO bench_source (id, qty, sku, price) "
            "SELECT g, g %% 7, 'sku-' || (g %% 1000), (g %% 997) * 1.25 "
            f"FROM generate_series(0, {rows - 1}) AS g")
        conn.exec_driver_sql("ANALYZE bench_source")
    engine.dispose()


def cpu_bound(ctx: Context, rows: int) -> list[Measure]:
    from active_data_flow import DataFlow
    from active_data_flow.connectors.sqlalchemy import SqlAlchemySink, SqlAlchemySource

    fill_source(ctx.url, rows)

    class InlineCopy(DataFlow):
        source = SqlAlchemySource(model=BenchSource, database="bench", batch_size=5000)
        sink = SqlAlchemySink(model=BenchTarget, database="bench", batch_size=5000)
        batch_size = 5000

    truncate(ctx.url, "bench_target")
    cpu0, busy0, t0 = self_cpu(), machine_busy(), time.perf_counter()
    result = InlineCopy().run()
    inline = Measure("inline runtime", result.read, time.perf_counter() - t0,
                     self_cpu() - cpu0, machine_busy() - busy0)
    assert count(ctx.url, "bench_target") == rows

    ctx.store.create_flow({
        "name": "db_copy",
        "source": {"type": "sqlalchemy", "config": {"model": "BenchSource", "database": "bench",
                                                    "batch_size": 5000}},
        "sink": {"type": "sqlalchemy", "config": {"model": "BenchTarget", "database": "bench",
                                                  "batch_size": 5000}},
        "runtime": {"type": "celery", "config": {"queue": ctx.queue, "partitions": 4}},
        "batch_size": 5000,
    })
    truncate(ctx.url, "bench_target")
    workers = start_workers(2, 1, ctx.env, ctx.queue, ctx.tmp)
    try:
        wall, cpu, busy, parts = run_celery(ctx.store, "db_copy", workers)
    finally:
        for w in workers:
            w.stop()
    assert count(ctx.url, "bench_target") == rows
    return [inline, Measure("Celery, 2 workers", rows, wall, cpu, busy, parts)]


# -- driver ----------------------------------------------------------------------------
@dataclass
class Context:
    url: str
    store: Any
    queue: str
    env: dict[str, str]
    tmp: Path
    repeat: int = 1


def print_io(results: list[Measure]) -> None:
    print("\nPart 1 - I/O-bound (20 ms per page of 1,000 rows), "
          f"{results[0].rows:,} rows, {results[1].partitions} partitions; sink: PostgreSQL "
          "(unlogged table) or none")
    print(f"{'':24}{'wall s':>8}{'rows/s':>10}{'speedup':>9}{'CPU s/100k':>12}"
          f"{'saturation':>12}  target")
    for base, m in zip(results[::2], results[1::2], strict=True):
        for row in (base, m):
            speed = base.wall / row.wall
            target = "" if row is base else (
                "  >= 3.5x " + ("met" if speed >= 3.5 else "MISSED"))
            print(f"{row.label:24}{row.wall:8.2f}{row.rate:10,.0f}{speed:8.2f}x"
                  f"{row.per_100k(row.cpu):12.3f}{row.saturation:12.0%}{target}")


def print_cpu(results: list[Measure]) -> None:
    inline, celery = results
    print(f"\nPart 2 - CPU-bound copy PostgreSQL -> PostgreSQL, {inline.rows:,} rows "
          f"({celery.partitions} partitions on 2 workers)")
    print(f"{'':20}{'wall s':>8}{'rows/s':>10}{'CPU s/100k':>12}{'machine CPU s/100k':>20}"
          f"{'saturation':>12}")
    for m in results:
        print(f"{m.label:20}{m.wall:8.2f}{m.rate:10,.0f}{m.per_100k(m.cpu):12.3f}"
              f"{m.per_100k(m.machine):20.3f}{m.saturation:12.0%}")
    ratio = celery.cpu / inline.cpu
    print(f"CPU per row, Celery / inline: {ratio:.2f}x  (target <= 1.15x: "
          f"{'met' if ratio <= 1.15 else 'MISSED'})")
    print(f"wall time, Celery / inline:   {celery.wall / inline.wall:.2f}x  (target <= 1.00x: "
          f"{'met' if celery.wall <= inline.wall else 'MISSED'})")
    print(f"machine: {os.cpu_count()} cores; saturation = busy CPU of all processes "
          "(PostgreSQL included) / (wall x cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["io", "cpu", "both"], default="both")
    parser.add_argument("--broker", default=os.environ.get("ADF_CELERY_BROKER_URL",
                                                            "redis://127.0.0.1:6379/9"))
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the CPU part")
    parser.add_argument("--io-rows", type=int, default=800_000, help="rows of the I/O part")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each measurement; the best (least disturbed) counts")
    args = parser.parse_args()

    from active_data_flow.runtimes.celery import create_app, set_default_app
    from active_data_flow.runtimes.heartbeat import FlowStore

    name = f"adf_bench_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://postgres@{PG}/{name}"
    queue = f"adf_bench_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        Base.metadata.create_all(engine)
        engine.dispose()
        register_database("bench", url)
        store = FlowStore(url, auto_upgrade=True)
        set_default_app(create_app(broker_url=args.broker, store_url=url, queue=queue))
        env = {**os.environ, "ADF_CELERY_BROKER_URL": args.broker, "ADF_DATABASE_URL": url,
               "ADF_FLOWS": str(Path(__file__).resolve()), DATA_ENV: url,
               "PYTHONPATH": str(ROOT)}
        with tempfile.TemporaryDirectory() as tmp:
            ctx = Context(url, store, queue, env, Path(tmp), args.repeat)
            print(f"broker {args.broker.split('@')[-1]}, PostgreSQL {PG}, "
                  f"{os.cpu_count()} cores")
            if args.part in ("io", "both"):
                print_io([m for sink in ("postgresql", "none")
                          for m in io_bound(ctx, args.io_rows, sink)])
            if args.part in ("cpu", "both"):
                print_cpu(cpu_bound(ctx, args.rows))
        store.close()
    finally:
        from active_data_flow.connectors.sqlalchemy import dispose_engines

        dispose_engines()
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
