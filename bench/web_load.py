"""Load on the web engine: requests/s and latency of its pages and API with a big store.

Fills a fresh store with ``--flows`` flows (10,000 by default, through the store's API) and
``--runs`` finished runs (1,000,000 by default, bulk-inserted with SQL, spread over the first
``--hot`` flows so that some flows have long histories), starts ``adf serve`` on 127.0.0.1,
and loads each endpoint for ``--duration`` seconds with ``--connections`` concurrent clients:
with wrk when it is installed (``apt-get install wrk``), else a Python asyncio client. The
client and the server share this machine's cores.

    python3 bench/web_load.py [--flows 10000] [--runs 1000000] [--database URL]
                              [--duration 10] [--connections 16] [--client wrk|python]

It prints a table: endpoint, requests/s, p50 and p99 latency, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from active_data_flow.runtimes.heartbeat import FlowStore
from active_data_flow.runtimes.heartbeat.store.models import flows, runs

USER, PASSWORD = "bench", "bench-password"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def fill(store: FlowStore, n_flows: int, n_runs: int, hot: int) -> None:
    """Store ``n_flows`` flows (every tenth scheduled) and ``n_runs`` finished runs."""
    started = time.perf_counter()
    for i in range(n_flows):
        spec = {"name": f"flow_{i:05d}",
                "source": {"type": "memory", "config": {"records": [{"n": 1}]}},
                "sink": {"type": "memory", "config": {"name": f"out_{i}"}},
                "runtime": {"type": "heartbeat",
                            "config": {"interval": 3600} if i % 10 == 0 else {}}}
        store.create_flow(spec)
    print(f"  {n_flows:,} flows created through the store in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    if not n_runs:
        return
    started = time.perf_counter()
    with store.engine.connect() as conn:
        ids = conn.execute(sa.select(flows.c.id).order_by(flows.c.name).limit(hot)).scalars()
        hot_ids = list(ids)
    now = datetime.now(UTC)
    chunk = 20_000
    with store.engine.begin() as conn:
        for start in range(0, n_runs, chunk):
            rows = []
            for k in range(start, min(start + chunk, n_runs)):
                ended = now - timedelta(seconds=(n_runs - k) * 5)
                failed = k % 50 == 0
                rows.append({
                    "flow_id": hot_ids[k % len(hot_ids)], "trigger": "schedule",
                    "status": "failed" if failed else "succeeded", "due_at": ended,
                    "attempt": 1, "started_at": ended - timedelta(seconds=2),
                    "ended_at": ended, "read": 1000, "written": 990 if failed else 1000,
                    "skipped": 0, "failed": 10 if failed else 0, "batches": 1,
                    "duration_s": 2.0, "error": "boom" if failed else None,
                    "created_at": ended, "cursor_end": k,
                })
            conn.execute(runs.insert(), rows)
    print(f"  {n_runs:,} runs inserted over {len(hot_ids)} flows in "
          f"{time.perf_counter() - started:.1f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(database_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "ADF_WEB_USER": USER, "ADF_WEB_PASSWORD": PASSWORD,
           "ADF_DATABASE_URL": database_url}
    adf = Path(sys.executable).parent / "adf"
    process = subprocess.Popen([str(adf), "serve", "--port", str(port), "--no-sync",
                                "--log-level", "warning"], cwd=workdir, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("adf serve did not start")


def load_wrk(url: str, duration: int, connections: int) -> tuple[float, float, float, int]:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency",
         "-H", f"Authorization: {AUTH}", url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, p50, p99, int(errors.group(1)) if errors else 0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def load_python(url: str, duration: int, connections: int) -> tuple[float, float, float, int]:
    async def run() -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + duration
        async with httpx.AsyncClient(headers={"Authorization": AUTH}, timeout=60) as client:
            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    response = await client.get(url)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    errors += response.status_code >= 400

            await asyncio.gather(*(worker() for _ in range(connections)))
        return latencies, errors

    latencies, errors = asyncio.run(run())
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / duration, cuts[49], cuts[98], errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--hot", type=int, default=100, help="flows the runs belong to")
    parser.add_argument("--database", help="SQLAlchemy URL of an EMPTY database "
                        "(default: a SQLite file in a temporary folder)")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk")
                                                         else "python")
    load = load_wrk if client == "wrk" else load_python

    with tempfile.TemporaryDirectory(prefix="adf-web-load-") as tmp:
        workdir = Path(tmp)
        url = args.database or f"sqlite:///{workdir / 'store.db'}"
        print(f"store: {url.split('@')[-1]}; {args.flows:,} flows, {args.runs:,} runs", flush=True)
        with FlowStore(url, auto_upgrade=True) as store:
            fill(store, args.flows, args.runs, args.hot)
        process, base = start_server(url, workdir)
        hot = "flow_00000"
        last = f"{args.flows - 50:05d}"
        endpoints = [
            ("dashboard /", "/"),
            ("dashboard, last page", f"/?offset={args.flows - 50}"),
            ("dashboard, search", "/?search=flow_09"),
            ("API GET /api/flows", "/api/flows"),
            ("API /api/flows, last page", f"/api/flows?offset={args.flows - 50}"),
            ("API GET /api/flows/{name}", f"/api/flows/flow_{last}"),
            ("flow page (10k runs)", f"/flows/{hot}"),
            ("API flow runs, page 1", f"/api/flows/{hot}/runs"),
            ("API flow runs, deep page", f"/api/flows/{hot}/runs?offset=9000"),
            ("API /api/runs (all)", "/api/runs"),
            ("health", "/health"),
        ]
        rows = []
        try:
            for label, path in endpoints:
                load(base + path, 2, 4)  # warm-up
                rate, p50, p99, errors = load(base + path, args.duration, args.connections)
                rows.append((label, rate, p50, p99, errors))
                print(f"  {label}: {rate:.0f} req/s", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=20)
    print(f"\nclient: {client}, {args.connections} connections, {args.duration} s per endpoint, "
          f"{os.cpu_count()} cores shared by client and server\n")
    print(f"{'endpoint':<30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, rate, p50, p99, errors in rows:
        print(f"{label:<30} {rate:>8.0f} {p50:>8.1f} {p99:>8.1f} {errors:>7}")


if __name__ == "__main__":
    main()
