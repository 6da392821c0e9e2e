"""Kill -> recovery: how long a run stays stranded when its worker is SIGKILLed mid-run.

Two ``adf worker`` processes at their default settings (beat every 5 s, 10 s leases renewed
every 2 s) share a flow store. A slow flow is triggered; once it runs on one worker, that
worker is killed with SIGKILL, and the clock runs until the flow runs again on the other
worker (the recovery run, resuming from the last checkpoint). A fresh worker replaces the
killed one, and the next trial starts. Target: median at most 15 s, max at most 30 s.

    python3 dev.py bench recovery [--trials 10] [--databases sqlite,postgresql,mariadb]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from active_data_flow.runtimes.heartbeat.store import FlowStore, RunStatus

SERVERS = {
    "postgresql": os.environ.get("ADF_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432"),
    "mariadb": os.environ.get("ADF_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306"),
}

FLOW = textwrap.dedent("""
    import time
    from active_data_flow import DataFlow
    from active_data_flow.connectors.memory import MemorySink, MemorySource

    class Slow(DataFlow):
        '''Reads 100,000 records at 10 ms each: far longer than a trial.'''
        source = MemorySource(records=[{"id": i} for i in range(100_000)])
        sink = MemorySink(name="slow")
        batch_size = 20

        def transform(self, message):
            time.sleep(0.01)
            return message
""")


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'recovery.sqlite3'}"
        return
    name = f"adf_bench_recovery_{os.getpid()}"
    suffix = "?charset=utf8mb4" if kind == "mariadb" else ""
    admin = sa.create_engine(f"{SERVERS[kind]}/{'postgres' if kind == 'postgresql' else ''}",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVERS[kind]}/{name}{suffix}"
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "active_data_flow.cli", "worker", "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def running_on(store: FlowStore, timeout: float = 60.0) -> tuple[int, str]:
    """The flow's running run and its worker, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow = store.get_flow("slow")
        if flow.running_run_id is not None:
            run = store.get_run(flow.running_run_id)
            if run.status == RunStatus.RUNNING and run.worker_id and run.batches > 0:
                return run.id, run.worker_id
        time.sleep(0.05)
    raise TimeoutError("the flow did not start")


def trial(store: FlowStore, workers: list[subprocess.Popen[bytes]],
          env: dict[str, str]) -> float:
    run_id, worker_id = running_on(store)
    victim = next(w for w in workers if worker_id.endswith(f":{w.pid}"))
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    victim.wait()
    workers.remove(victim)
    deadline = killed + 120
    while time.monotonic() < deadline:
        new_id, new_worker = running_on(store, timeout=deadline - time.monotonic())
        if new_id != run_id and new_worker != worker_id:
            recovered = time.monotonic() - killed
            workers.append(start_worker(env))
            return recovered
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} was not recovered within 120 s")


def measure(kind: str, trials: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "flows").mkdir()
        (folder / "flows" / "slow.py").write_text(FLOW)
        with database(kind, folder) as url:
            env = {**os.environ, "ADF_DATABASE_URL": url, "ADF_FLOWS": str(folder / "flows")}
            subprocess.run([sys.executable, "-m", "active_data_flow.cli", "db", "upgrade"],
                           env=env, check=True, capture_output=True)
            subprocess.run([sys.executable, "-m", "active_data_flow.cli", "sync"], env=env,
                           check=True, capture_output=True)
            store = FlowStore(url)
            workers = [start_worker(env), start_worker(env)]
            times = []
            try:
                store.trigger("slow")
                for _ in range(trials):
                    times.append(trial(store, workers, env))
                    print(f"  {kind}: recovered in {times[-1]:.1f} s", flush=True)
            finally:
                for w in workers:
                    w.send_signal(signal.SIGKILL)
                    w.wait()
                store.close()
            return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--databases", default="sqlite,postgresql,mariadb")
    args = parser.parse_args()
    results = {kind: measure(kind, args.trials) for kind in args.databases.split(",")}
    print(f"\nKill -> recovery at default settings, {args.trials} kills per database")
    print(f"{'database':<12}{'median':>9}{'max':>9}   target: median <= 15 s, max <= 30 s")
    for kind, times in results.items():
        median, worst = statistics.median(times), max(times)
        verdict = "ok" if median <= 15 and worst <= 30 else "MISSED"
        print(f"{kind:<12}{median:>8.1f}s{worst:>8.1f}s   {verdict}")


if __name__ == "__main__":
    main()
