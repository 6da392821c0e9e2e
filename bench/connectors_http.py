"""Throughput of the HTTP and Redis Streams connectors, each beside a reference in the same run.

* ``inbox``: ``POST /inbox/{flow}`` on the web engine (``adf serve``, a PostgreSQL store),
  4 client threads; single records vs batches of 100; requests/s and records/s. Every
  answer is a 202 after the commit.
* ``pull``: the ``http`` source (offset pagination, 1,000 records a page) against a local
  Starlette API under uvicorn, vs a hand-written ``httpx`` loop over the same pages.
* ``redis``: a Redis stream -> PostgreSQL table: a flow (``redis_stream`` source ->
  ``SqlAlchemySink``, batches of 1,000, XACK after each commit) vs a hand-written loop
  (``XREADGROUP`` 1,000 + ``executemany`` INSERT + commit + ``XACK``).

Variants alternate, ``--rounds`` times each; medians and ratios are reported. The machine is
shared (other work runs on its two cores): compare within a run, not across runs.

    .venv/bin/python bench/connectors_http.py [--rounds 3] [--records 50000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
import uvicorn
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from active_data_flow import DataFlow
from active_data_flow.connectors.http import HttpSource
from active_data_flow.connectors.redis_stream import RedisStreamSink, RedisStreamSource
from active_data_flow.connectors.sqlalchemy import SqlAlchemySink
from active_data_flow.runtimes.heartbeat import FlowStore
from active_data_flow.runtimes.heartbeat.engine.inbox import hash_token
from active_data_flow.runtimes.inline import Inline

PG_ADMIN = os.environ.get("ADF_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("ADF_BENCH_REDIS", "redis://127.0.0.1:6379/0")
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pg_database() -> Iterator[str]:
    name = f"adf_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def median_table(title: str, rows: dict[str, list[float]], unit: str,
                 reference: str | None = None) -> None:
    print(f"\n{title}")
    ref = statistics.median(rows[reference]) if reference else None
    for name, values in rows.items():
        med = statistics.median(values)
        ratio = f"  {med / ref:.2f}x" if ref else ""
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"  {name:<34} {med:>10,.0f} {unit}{ratio}   (runs: {runs})")


# -- inbox ingest -----------------------------------------------------------------------
@contextmanager
def engine_served(url: str, workdir: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "ADF_DATABASE_URL": url, "ADF_WEB_USER": "bench",
           "ADF_WEB_PASSWORD": "bench-password-long-enough"}
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen([str(Path(sys.executable).parent / "adf"), "serve", "--port",
                                str(port), "--log-level", "warning"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"adf serve did not start: {(workdir / 'serve.log').read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def ingest(base: str, per_request: int, requests: int, threads: int = 4) -> tuple[float, float]:
    """(requests/s, records/s) of ``requests`` POSTs of ``per_request`` records."""
    counter = iter(range(requests))
    lock = threading.Lock()
    run = uuid.uuid4().hex[:8]

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                body: Any = ({"id": n, "total": 1.5} if per_request == 1 else
                             [{"id": n * per_request + i, "total": 1.5}
                              for i in range(per_request)])
                response = http.post("/inbox/orders", json=body,
                                     headers={"Idempotency-Key": f"{run}-{n}"})
                assert response.status_code == 202, response.text

    workers = [threading.Thread(target=client) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    return requests / elapsed, requests * per_request / elapsed


def bench_inbox(rounds: int) -> None:
    with pg_database() as url, tempfile.TemporaryDirectory() as tmp:
        with FlowStore(url, auto_upgrade=True) as store:
            store.create_flow({"name": "orders", "source": {"type": "http_inbox", "config": {
                "token_sha256": hash_token(TOKEN)}}, "sink": {"type": "dead_letters"}})
        with engine_served(url, Path(tmp)) as base:
            ingest(base, 1, 50)  # warm up
            rows: dict[str, list[float]] = {"single (req/s)": [], "single (records/s)": [],
                                            "batch of 100 (req/s)": [],
                                            "batch of 100 (records/s)": []}
            for _ in range(rounds):
                req, rec = ingest(base, 1, 600)
                rows["single (req/s)"].append(req)
                rows["single (records/s)"].append(rec)
                req, rec = ingest(base, 100, 100)
                rows["batch of 100 (req/s)"].append(req)
                rows["batch of 100 (records/s)"].append(rec)
    median_table("inbox ingest: POST /inbox/{flow}, adf serve, PostgreSQL store, 4 clients",
                 rows, "/s")


# -- pull source ------------------------------------------------------------------------
def api_app(items: list[dict[str, Any]]) -> Starlette:
    async def offsets(request: Request) -> Response:
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", 100))
        return JSONResponse(items[offset:offset + limit])

    return Starlette(routes=[Route("/offsets", offsets)])


@contextmanager
def api_served(items: list[dict[str, Any]]) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api_app(items), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def pull_flow(url: str) -> int:
    source = HttpSource(url=f"{url}/offsets", pagination="offset", page_size=1000,
                        page_size_param="limit")
    with source:
        return sum(1 for _ in source.read())


def pull_by_hand(url: str) -> int:
    count, offset = 0, 0
    with httpx.Client(timeout=30) as http:
        while True:
            page = http.get(f"{url}/offsets", params={"offset": offset, "limit": 1000}).json()
            count += len(page)
            offset += len(page)
            if len(page) < 1000:
                return count


def bench_pull(rounds: int, records: int) -> None:
    items = [{"id": i, "name": f"name {i}", "amount": i * 3, "tags": ["a", "b"]}
             for i in range(records)]
    rows: dict[str, list[float]] = {"hand-written httpx loop": [], "http source": []}
    with api_served(items) as url:
        pull_by_hand(url)
        for _ in range(rounds):
            for name, read in (("hand-written httpx loop", pull_by_hand),
                               ("http source", pull_flow)):
                started = time.perf_counter()
                assert read(url) == records
                rows[name].append(records / (time.perf_counter() - started))
    median_table(f"pull: {records:,} records, pages of 1,000, local uvicorn API", rows,
                 "records/s", reference="hand-written httpx loop")


# -- Redis Streams -> PostgreSQL ---------------------------------------------------------
class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "bench_events"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(100))
    amount: Mapped[int]


def redis_flow(stream: str, group: str, url: str) -> None:
    class Copy(DataFlow):
        source = RedisStreamSource(url=REDIS, stream=stream, group=group, consumer="bench",
                                   count=1000)
        sink = SqlAlchemySink(model=Event, database=url)
        runtime = Inline(batch_size=1000)

    Copy().run()


def redis_by_hand(stream: str, group: str, url: str) -> None:
    import json

    client = redis.Redis.from_url(REDIS, decode_responses=True)
    client.xgroup_create(stream, group, id="0", mkstream=True)
    engine = sa.create_engine(url)
    table = Event.__table__
    try:
        while True:
            reply: Any = client.xreadgroup(group, "bench", {stream: ">"}, count=1000)
            if not reply:
                return
            entries = reply[0][1]
            rows = [json.loads(fields["data"]) for _, fields in entries]
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)  # type: ignore[attr-defined]
            client.xack(stream, group, *[entry_id for entry_id, _ in entries])
    finally:
        engine.dispose()
        client.close()


def bench_redis(rounds: int, records: int) -> None:
    stream = f"adf-bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS)
    with RedisStreamSink(url=REDIS, stream=stream) as sink:
        sink.write_batch({"id": i, "name": f"name {i}", "amount": i} for i in range(records))
    rows: dict[str, list[float]] = {"XREADGROUP + executemany loop": [],
                                    "redis_stream -> SqlAlchemySink flow": []}
    variants: list[tuple[str, Callable[[str, str, str], None]]] = [
        ("XREADGROUP + executemany loop", redis_by_hand),
        ("redis_stream -> SqlAlchemySink flow", redis_flow)]
    try:
        with pg_database() as url:
            engine = sa.create_engine(url)
            Base.metadata.create_all(engine)
            for _ in range(rounds):
                for name, run in variants:
                    with engine.begin() as conn:
                        conn.exec_driver_sql("TRUNCATE bench_events")
                    group = f"g-{uuid.uuid4().hex[:6]}"
                    started = time.perf_counter()
                    run(stream, group, url)
                    rows[name].append(records / (time.perf_counter() - started))
                    with engine.connect() as conn:
                        assert conn.exec_driver_sql(
                            "SELECT count(*) FROM bench_events").scalar() == records
                    assert int(client.xpending(stream, group)["pending"]) == 0
            engine.dispose()
    finally:
        client.delete(stream)
        client.close()
    median_table(f"Redis stream -> PostgreSQL: {records:,} entries, batches of 1,000", rows,
                 "records/s", reference="XREADGROUP + executemany loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--only", default="inbox,pull,redis")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print("(a shared machine: two cores, other work running; compare within this run)")
    if "inbox" in only:
        bench_inbox(args.rounds)
    if "pull" in only:
        bench_pull(args.rounds, args.records)
    if "redis" in only:
        bench_redis(args.rounds, args.records)


if __name__ == "__main__":
    main()
