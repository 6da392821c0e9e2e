"""The store's partition bookkeeping, on PostgreSQL, without brokers: claims, leases (by time
travel), fencing, concurrency limits (also raced by processes), and how a run ends."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from active_data_flow.catalog import catalog
from active_data_flow.errors import RunClaimLost
from active_data_flow.runtimes.celery.testing import RangeSource
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedPartition,
    ClaimedRun,
    FlowStore,
    PartitionBusy,
    RunCounts,
    RunStatus,
)

LEASE = 10.0
HOLD = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(postgres_url: str, clock: Clock) -> Iterator[FlowStore]:
    catalog.clear()
    store = FlowStore(postgres_url, lease_seconds=LEASE, auto_upgrade=True, clock=clock)
    yield store
    store.close()


def spec(name: str, **runtime: Any) -> dict[str, Any]:
    return {"name": name, "source": {"type": "range", "config": {"stop": 100}},
            "sink": {"type": "memory", "config": {}},
            "runtime": {"type": "celery", "config": runtime}}


Dispatch = Callable[..., tuple[ClaimedRun, list[int]]]


@pytest.fixture
def dispatch(store: FlowStore) -> Dispatch:
    """Create (once), trigger and claim flow ``name``, and record ``parts`` parts of it."""
    def make(name: str = "f", parts: int = 2, **limits: Any) -> tuple[ClaimedRun, list[int]]:
        if name not in {f.name for f in store.list_flows(limit=100).items}:
            store.create_flow(spec(name))
        store.trigger(name)
        (claim,) = [c for c in store.runs.claim_due("heartbeat") if c.flow.name == name]
        pieces = RangeSource(stop=100).split(parts)
        ids = store.partitions.open(claim, [(p.source.to_dict(), p.cursor) for p in pieces],
                                    cursor_start=None, hold_seconds=HOLD, **limits)
        assert ids is not None
        return claim, ids

    return make


def held(got: object) -> ClaimedPartition:
    assert isinstance(got, ClaimedPartition), got
    return got


def test_recording_parts_is_idempotent_and_needs_the_dispatch_claim(
    store: FlowStore, dispatch: Dispatch
) -> None:
    claim, ids = dispatch(parts=3)
    again = store.partitions.open(claim, [({"type": "range", "config": {"stop": 1}}, None)],
                                  cursor_start=None, hold_seconds=HOLD)
    assert again == ids
    assert [p.part for p in store.list_partitions(claim.run_id)] == [0, 1, 2]
    stale = ClaimedRun(claim.run_id, "0" * 32, "x", claim.flow, 1, "manual")
    assert store.partitions.open(stale, [], cursor_start=None, hold_seconds=HOLD) is None


def test_a_held_part_is_busy_until_its_lease_expires_then_taken_over_and_fenced(
    store: FlowStore, dispatch: Dispatch, clock: Clock
) -> None:
    _, (first, _) = dispatch()
    a = held(store.partitions.claim(first, "a"))
    busy = store.partitions.claim(first, "b")
    assert isinstance(busy, PartitionBusy)
    assert "held by a" in busy.reason
    assert 0 < busy.retry_in <= LEASE + 1

    clock.advance(LEASE - 1)
    assert isinstance(store.partitions.claim(first, "b"), PartitionBusy)
    clock.advance(2)  # a stopped renewing: its lease expired
    b = held(store.partitions.claim(first, "b"))

    assert b.attempt == 2
    with pytest.raises(RunClaimLost):
        store.partitions.checkpoint(a, 5)
    assert store.partitions.renew([a, b]) == {first}
    store.partitions.checkpoint(b, 7)
    assert store.get_partition(first).cursor == 7


def test_the_last_part_ends_the_run_and_moves_the_cursor_to_the_furthest_checkpoint(
    store: FlowStore, dispatch: Dispatch
) -> None:
    claim, ids = dispatch(parts=3)
    parts = [held(store.partitions.claim(i, "w")) for i in ids]
    store.partitions.checkpoint(parts[0], 32)
    store.partitions.checkpoint(parts[1], 65)  # the last part read nothing: no checkpoint
    for p in parts[:2]:
        outcome = store.partitions.finish(p, RunStatus.SUCCEEDED, RunCounts(read=33, written=33))
        assert outcome.run is None
    assert store.get_run(claim.run_id).read == 66  # counts so far, while a part still runs
    outcome = store.partitions.finish(parts[2], RunStatus.SUCCEEDED, RunCounts())

    assert outcome.run is not None
    assert outcome.run.status == "succeeded"
    assert (outcome.run.read, outcome.run.written) == (66, 66)
    assert outcome.run.cursor_end == 65
    flow = store.get_flow("f")
    assert flow.cursor == 65
    assert flow.last_run_status == "succeeded"
    assert flow.running_run_id is None


def test_a_failed_part_fails_the_run_once_the_others_ended_and_keeps_the_cursor(
    store: FlowStore, dispatch: Dispatch
) -> None:
    _, (p0, p1) = dispatch()
    a, b = held(store.partitions.claim(p0, "w")), held(store.partitions.claim(p1, "w"))
    store.partitions.checkpoint(b, 99)
    # The error's type (and traceback) are taken from the exception itself.
    first = store.partitions.finish(a, RunStatus.FAILED, RunCounts(read=3),
                                    error=ValueError("boom"))
    assert first.run is None  # part 1 still runs
    outcome = store.partitions.finish(b, RunStatus.SUCCEEDED, RunCounts(read=50))

    assert outcome.run is not None
    assert outcome.run.status == "failed"
    assert outcome.run.error is not None
    assert "partition 0: boom" in outcome.run.error
    assert outcome.run.error_type == "builtins.ValueError"
    assert store.get_flow("f").cursor is None


def test_a_retried_part_is_pending_again_and_resumes_from_its_checkpoint(
    store: FlowStore, dispatch: Dispatch
) -> None:
    _, (p0, _) = dispatch()
    a = held(store.partitions.claim(p0, "a"))
    store.partitions.checkpoint(a, 20)
    assert store.partitions.retry(a, RunCounts(read=21), error="timeout, retrying")
    again = held(store.partitions.claim(p0, "b"))
    assert (again.cursor, again.attempt, again.counts.read) == (20, 2, 21)


def test_parts_of_a_reclaimed_run_are_void(
    store: FlowStore, dispatch: Dispatch, clock: Clock
) -> None:
    claim, (p0, p1) = dispatch()
    a = held(store.partitions.claim(p0, "a"))
    clock.advance(HOLD + 1)  # nothing renewed the run: the heartbeat reclaims it
    assert store.runs.reclaim_expired() == [claim.run_id]

    assert store.partitions.claim(p1, "b") is None
    assert store.get_partition(p1).status == "cancelled"
    assert store.partitions.renew([a]) == {p0}


def test_limits_count_live_parts_of_the_flow_and_of_its_group(
    store: FlowStore, dispatch: Dispatch, clock: Clock
) -> None:
    _, (f0, f1) = dispatch("f", concurrency_limit=1, concurrency_group="db", group_limit=2)
    _, (g0, g1) = dispatch("g", concurrency_group="db", group_limit=2)
    held(store.partitions.claim(f0, "w"))
    limited = store.partitions.claim(f1, "w")
    assert isinstance(limited, PartitionBusy)
    assert "flow at its concurrency limit" in limited.reason
    held(store.partitions.claim(g0, "w"))
    grouped = store.partitions.claim(g1, "w")
    assert isinstance(grouped, PartitionBusy)
    assert "group 'db'" in grouped.reason

    clock.advance(LEASE + 1)  # the holders died: expired parts take no slot
    held(store.partitions.claim(g1, "w"))


def _claim_in_process(url: str, rounds: list[int], barrier: Any, results: Any) -> None:
    """One racer: in each round, wait for the others, then claim that round's part."""
    store = FlowStore(url, lease_seconds=LEASE)
    for partition_id in rounds:
        barrier.wait()
        got = store.partitions.claim(partition_id, f"racer-{partition_id}")
        results.put((partition_id, isinstance(got, ClaimedPartition)))
    store.close()


def test_processes_racing_for_slots_never_exceed_the_limit(
    store: FlowStore, dispatch: Dispatch, postgres_url: str
) -> None:
    # Ten rounds: six processes each claim a different part of one run at the same moment;
    # the flow allows two at a time.
    rounds = [dispatch(f"race{n}", parts=6, concurrency_limit=2)[1] for n in range(10)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(6), context.Queue()
    procs = [context.Process(target=_claim_in_process,
                             args=(postgres_url, [ids[k] for ids in rounds], barrier, results))
             for k in range(6)]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in range(60))
    for p in procs:
        p.join(30)

    for n, ids in enumerate(rounds):
        assert [outcomes[i] for i in ids].count(True) == 2, f"round {n}"
