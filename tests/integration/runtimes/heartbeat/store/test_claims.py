"""Claims, leases and fencing: a run is held by one worker at a time; a worker that stops
renewing loses it after its lease; a worker that lost its claim can no longer write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow import DataFlow
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import RunClaimLost
from active_data_flow.runtimes.heartbeat import Executor, FlowStore, Heartbeat, beat, sync
from active_data_flow.runtimes.heartbeat.store import RunCounts, RunStatus
from tests.integration.runtimes.heartbeat.conftest import Clock, memory_flow

LEASE = 30.0

# MariaDB reports a failed CHECK as an OperationalError (4025), the others as IntegrityError.
REFUSED = (sa.exc.IntegrityError, sa.exc.OperationalError)


@pytest.fixture
def timed(make_store: Callable[..., FlowStore], clock: Clock) -> FlowStore:
    return make_store(clock=clock, lease_seconds=LEASE)


def test_lease_time_travel_reclaims_only_expired_running_runs(
    timed: FlowStore, clock: Clock
) -> None:
    for name in ("a", "b", "c"):
        timed.create_flow(memory_flow(name, [], "out", interval=3600))
    claims = {c.flow.name: c for c in timed.runs.claim_due("w1")}
    timed.runs.finish(claims["c"], RunStatus.SUCCEEDED, RunCounts())  # terminal: untouched

    clock.advance(LEASE - 1)
    assert timed.runs.reclaim_expired() == []
    assert timed.runs.renew([claims["b"]]) == set()  # b's worker is alive and renews
    clock.advance(2)  # a's lease expired a second ago; b's has LEASE - 1 s left
    assert timed.runs.reclaim_expired() == [claims["a"].run_id]

    lost = timed.get_run(claims["a"].run_id)
    assert (lost.status, lost.error_type) == ("failed", "active_data_flow.errors.WorkerLost")
    assert "'w1' stopped renewing its lease" in (lost.error or "")
    assert timed.get_run(claims["b"].run_id).status == "running"
    assert timed.get_run(claims["c"].run_id).status == "succeeded"
    recovery = timed.list_runs("a", status="pending").items[0]
    assert (recovery.trigger, recovery.due_at) == ("recovery", clock.now)
    assert timed.get_flow("a").last_error == lost.error


def test_a_reclaimed_worker_is_fenced_off_its_cursor_and_status(
    timed: FlowStore, clock: Clock
) -> None:
    timed.create_flow(memory_flow("copy", [], "out", interval=3600))
    [old] = timed.runs.claim_due("old")
    timed.runs.checkpoint(old, 10)
    clock.advance(LEASE + 1)
    timed.runs.reclaim_expired()
    [new] = timed.runs.claim_due("new")
    timed.runs.checkpoint(new, 20)

    with pytest.raises(RunClaimLost, match="'old' no longer holds its claim"):
        timed.runs.checkpoint(old, 15)
    with pytest.raises(RunClaimLost):
        timed.runs.finish(old, RunStatus.SUCCEEDED, RunCounts(read=99))
    assert not timed.runs.progress(old, RunCounts(read=99))
    assert timed.runs.renew([old, new]) == {old.run_id}
    assert timed.runs.release(old, reason="late") is None
    assert timed.get_flow("copy").cursor == 20
    assert timed.get_run(new.run_id).status == "running"
    timed.runs.finish(new, RunStatus.SUCCEEDED, RunCounts(read=1))
    assert timed.get_flow("copy").last_run_id == new.run_id


def test_a_worker_reclaimed_mid_run_stops_without_writing_its_late_batch(
    make_store: Callable[..., FlowStore], clock: Clock, sink_name: str
) -> None:
    """Deterministic interleaving: the run blocks in its second batch while another worker
    reclaims it; when it resumes, its checkpoint is rejected and it records nothing."""
    store = make_store(clock=clock, lease_seconds=LEASE)
    in_batch, go_on = threading.Event(), threading.Event()

    class Slow(DataFlow):
        source = MemorySource(records=[{"id": i} for i in range(4)])
        sink = MemorySink(name=sink_name)
        runtime = Heartbeat(interval=3600, batch_size=2)

        def transform(self, message: Any) -> Any:
            if message["id"] == 2:
                in_batch.set()
                assert go_on.wait(10)
            return message

    sync(store, Slow)
    [claim] = store.runs.claim_due("slow")
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(Executor(store).execute(claim)))
    worker.start()
    assert in_batch.wait(10)
    assert store.get_flow("slow").cursor == 1  # the first batch is durable

    clock.advance(LEASE + 1)
    assert store.runs.reclaim_expired() == [claim.run_id]
    go_on.set()
    worker.join(10)

    assert outcome == [None]  # lost: no status written by the old worker
    assert store.get_flow("slow").cursor == 1  # its second batch's cursor was rejected
    assert store.get_run(claim.run_id).status == "failed"
    # The sink is not in the store's database: the rejected batch was flushed (at-least-once);
    # the recovery run re-reads it, so nothing is lost.
    assert len(beat(store).succeeded) == 1
    assert [r["id"] for r in MemorySink.records_of(sink_name)] == [0, 1, 2, 3, 2, 3]


def test_the_database_refuses_a_second_live_run_for_a_flow(store: FlowStore) -> None:
    flow = store.create_flow(memory_flow("copy", [], "out", interval=60))
    now = store.now().replace(tzinfo=None)
    insert = sa.text(
        "INSERT INTO adf_runs (flow_id, status, live_flow_id, {q}trigger{q}, due_at, "
        "claim_token, attempt, {q}read{q}, written, skipped, failed, batches, created_at) "
        "VALUES (:flow, :status, :live, 'manual', :now, :token, 0, 0, 0, 0, 0, 0, :now)"
        .format(q="`" if store.database.backend == "mysql" else '"'))

    def try_insert(**values: Any) -> None:
        with store.engine.begin() as conn:
            conn.execute(insert, {"flow": flow.id, "now": now, "token": None, **values})

    with pytest.raises(REFUSED):  # a pending run exists already
        try_insert(status="running", live=flow.id, token="t" * 32)
    with pytest.raises(REFUSED):  # a live run must hold the flow's slot
        try_insert(status="pending", live=None)
    with pytest.raises(REFUSED):  # a running run carries its claim token
        try_insert(status="running", live=flow.id + 1000)
    with pytest.raises(REFUSED):  # statuses are the enum's
        try_insert(status="sleeping", live=None)
    try_insert(status="succeeded", live=None)  # terminal runs: as many as you like
    try_insert(status="failed", live=None)
    assert store.list_runs("copy").total == 3


def test_the_status_enums_are_the_databases_check_constraints(store: FlowStore) -> None:
    inspector = sa.inspect(store.engine)
    checks = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints("adf_runs")}
    text = " ".join(str(v) for v in checks.values())
    for status in RunStatus:
        assert f"'{status.value}'" in text
    flows = " ".join(str(c["sqltext"]) for c in inspector.get_check_constraints("adf_flows"))
    assert "'active'" in flows
    assert "'paused'" in flows
