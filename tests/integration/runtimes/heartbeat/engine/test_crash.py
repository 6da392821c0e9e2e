"""Workers killed with SIGKILL: named points of a run, then 20 random kills per database.

A worker process (a child of the test, from a preloaded fork server) copies one source table
three ways: into the store's own database (batch and cursor in one transaction), into another
database with an upserting sink, and into another database with an appending sink. After
every kill: the dead worker's runs are reclaimed within lease + renewal interval + 1 s; once
a fresh worker has finished, every run is terminal or pending, no row is lost, none is
duplicated in the store's database or by the upsert, and the appending sink elsewhere holds at
most one duplicated batch per kill (at-least-once, as documented).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow.runtimes.heartbeat import FlowStore
from tests.integration.runtimes.heartbeat import harness, sqlkit
from tests.integration.runtimes.heartbeat.crash import CRASH_POINTS

LEASE = 0.6
RENEW = LEASE / 5
BATCH = 25


def kind_of(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].replace("mysql", "mariadb")


@dataclass
class Setup:
    store: FlowStore
    url: str
    other: str
    rows: int

    def spec(self, name: str, url: str, table: str, mode: str) -> dict[str, Any]:
        return {
            "name": name,
            "source": {"type": "test_table", "config": {"url": self.url, "table": "src",
                                                       "chunk": 200}},
            "sink": {"type": "test_table", "config": {"url": url, "table": table,
                                                     "mode": mode}},
            "runtime": {"type": "heartbeat", "config": {"batch_size": BATCH, "interval": 3600,
                                                        "backoff": 0.05}},
        }


def setup(url: str, other: str, rows: int) -> Setup:
    store = FlowStore(url, auto_upgrade=True, lease_seconds=LEASE, renew_seconds=RENEW)
    store.downgrade("base")  # a clean store for each case
    store.upgrade()
    sqlkit.fill(url, "src", rows)
    sqlkit.create(url, sqlkit.append_table("shared"))
    sqlkit.create(other, sqlkit.data_table("upserted"))
    sqlkit.create(other, sqlkit.append_table("appended"))
    s = Setup(store, url, other, rows)
    store.create_flow(s.spec("shared", url, "shared", "append"))
    store.create_flow(s.spec("upsert", other, "upserted", "upsert"))
    store.create_flow(s.spec("append", other, "appended", "append"))
    return s


def start_worker(s: Setup, crash_at: tuple[str, int] | None = None,
                 concurrency: int = 3) -> Any:
    ctx = harness.context()
    ready = ctx.Event()
    child = ctx.Process(target=harness.run_worker, args=(s.url, LEASE, crash_at, ready),
                        kwargs={"concurrency": concurrency})
    child.start()
    deadline = time.monotonic() + 30
    while not ready.wait(0.02):  # up after its first beat, or killed during it
        if not child.is_alive():
            break
        assert time.monotonic() < deadline, "the worker did not start"
    return child


def running_runs(store: FlowStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM adf_runs WHERE status = 'running'")).scalar_one())


def reclaim_after_kill(s: Setup, killed_at: float) -> float:
    """Reclaim the dead worker's runs as soon as their leases expire; return how long after
    the kill that was."""
    deadline = killed_at + LEASE + RENEW + 5
    while running_runs(s.store):
        s.store.runs.reclaim_expired()
        assert time.monotonic() < deadline, "runs of a dead worker were never reclaimed"
        time.sleep(0.02)
    return time.monotonic() - killed_at


def finish(s: Setup) -> None:
    """Let a fresh worker copy everything, then stop it gracefully (SIGTERM)."""
    child = start_worker(s)
    deadline = time.monotonic() + 60
    try:
        while not all(s.store.get_flow(n).cursor == s.rows and
                      s.store.get_flow(n).running_run_id is None
                      for n in ("shared", "upsert", "append")):
            for name in ("shared", "upsert", "append"):
                flow = s.store.get_flow(name)
                if flow.cursor != s.rows and flow.next_run_at is not None and \
                        flow.next_run_at > s.store.now():
                    s.store.trigger(name)  # copied part of it and rescheduled: go on now
            assert time.monotonic() < deadline, "the copy did not finish"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGTERM)
        child.join(20)
        assert child.exitcode == 0, f"graceful stop failed: exit code {child.exitcode}"


def check_targets(s: Setup, kills: int) -> dict[str, int]:
    expected = list(range(1, s.rows + 1))
    assert running_runs(s.store) == 0
    with s.store.engine.connect() as conn:
        statuses = set(conn.execute(sa.text("SELECT DISTINCT status FROM adf_runs")).scalars())
    assert statuses <= {"pending", "succeeded", "failed", "cancelled"}
    assert sqlkit.ids(s.url, "shared") == expected  # data and cursor in one transaction
    assert sqlkit.ids(s.other, "upserted") == expected  # upsert: duplicates collapse
    appended = sqlkit.ids(s.other, "appended")
    assert sorted(set(appended)) == expected  # nothing lost
    duplicated = len(appended) - len(expected)
    assert duplicated <= BATCH * kills, f"{duplicated} duplicates after {kills} kill(s)"
    counts = collections.Counter(appended)
    assert max(counts.values()) <= 1 + kills
    return {"duplicated": duplicated}


# -- named points ----------------------------------------------------------------------
# The worker runs the three flows one after the other (shared, upsert, append; 8 batches
# each), so the n-th hit of a point lands in a known flow and batch (crash.py says where
# each point is); the flows' cursors right after the kill show that it did.
CASES = [  # (point, hit, cursors of shared/upsert/append at the kill, duplicates appended)
    ("after_claim", 1, (None, None, None), 0),
    # the shared flow's 4th batch, written but not committed:
    ("mid_batch", 4, (3 * BATCH, None, None), 0),
    # the upsert's 5th batch (the shared flow never gets here):
    ("after_sink_commit", 5, (8 * BATCH, 4 * BATCH, None), 0),
    # the append's 5th batch: durable, cursor not yet:
    ("after_sink_commit", 13, (8 * BATCH, 8 * BATCH, 4 * BATCH), BATCH),
    ("after_cursor_commit", 6, (6 * BATCH, None, None), 0),
    # the shared flow's final status, not committed:
    ("while_finishing", 1, (8 * BATCH, None, None), 0),
]


def cursors(store: FlowStore) -> tuple[Any, ...]:
    return tuple(store.get_flow(name).cursor for name in ("shared", "upsert", "append"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_a_worker_killed_at_each_named_point_loses_nothing(
    kind: str, make_database: Any
) -> None:
    assert {c[0] for c in CASES} == set(CRASH_POINTS)
    url, other = make_database(kind), make_database(kind)
    for point, hit, at_kill, duplicates in CASES:
        s = setup(url, other, rows=8 * BATCH)
        child = start_worker(s, crash_at=(point, hit), concurrency=1)
        child.join(30)
        killed_at = time.monotonic()
        assert child.exitcode == -signal.SIGKILL, f"{point}: the worker was not killed there"
        assert cursors(s.store) == at_kill, f"{point}:{hit}: killed somewhere else"
        waited = reclaim_after_kill(s, killed_at)
        assert waited <= LEASE + RENEW + 1, f"{point}: reclaimed {waited:.2f}s after the kill"
        finish(s)
        assert check_targets(s, kills=1) == {"duplicated": duplicates}, (point, hit)
        s.store.close()


# -- random kills ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_twenty_random_kills_lose_nothing_and_duplicate_at_most_a_batch_each(
    kind: str, make_database: Any
) -> None:
    random_kills(kind, make_database, kills=20, rows=4000)


@pytest.mark.stress
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_stress_a_hundred_random_kills(kind: str, make_database: Any) -> None:
    """Opt-in: 100 kills over a larger copy (about a minute and a half per database)."""
    random_kills(kind, make_database, kills=100, rows=20_000)


def random_kills(kind: str, make_database: Any, *, kills: int, rows: int) -> None:
    rng = random.Random(f"{kind}-{kills}-kills")
    url, other = make_database(kind), make_database(kind)
    s = setup(url, other, rows=rows)
    slowest = 0.0
    for _ in range(kills):
        child = start_worker(s)
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        child.join(10)
        slowest = max(slowest, reclaim_after_kill(s, killed_at))
    assert slowest <= LEASE + RENEW + 1, f"a run was reclaimed {slowest:.2f}s after its kill"
    progress = {n: s.store.get_flow(n).cursor for n in ("shared", "upsert", "append")}
    assert all(c is not None for c in progress.values()), "the kills left no time for work"
    finish(s)
    check_targets(s, kills=kills)
    s.store.close()
