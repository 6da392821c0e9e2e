"""A claim whose dispatch failed is given back uncounted (issue 11, item 6): on each database,
the run is pending again, due later, with the same attempt as before the claim and, if it had
never started, no start time; a run that had started keeps its start."""

from __future__ import annotations

from datetime import timedelta

from active_data_flow.runtimes.heartbeat import FlowStore
from tests.integration.runtimes.heartbeat.conftest import Clock, memory_flow


def test_an_unclaimed_run_is_pending_later_and_its_claim_uncounted(
    make_store: object, clock: Clock,
) -> None:
    store: FlowStore = make_store(clock=clock)  # type: ignore[operator]
    store.create_flow(memory_flow("queued", [{"id": 1}], "unused", interval=3600))
    [claim] = store.runs.claim_due("w1")
    assert claim.attempt == 1

    record = store.runs.release(claim, reason="dispatch failed: broker down", retry_in=30,
                                unclaim=True)

    assert record is not None
    assert (record.status, record.attempt, record.started_at, record.cursor_start) == (
        "pending", 0, None, None)
    assert record.error == "dispatch failed: broker down"
    assert record.due_at == clock.now + timedelta(seconds=30)
    assert store.runs.claim_due("w1") == []  # not due again before then

    clock.advance(31)
    [again] = store.runs.claim_due("w1")
    assert again.attempt == 1
    started = store.get_run(again.run_id).started_at
    store.runs.release(again, reason="worker stopping")  # it ran a while: counted
    clock.advance(1)
    [third] = store.runs.claim_due("w1")
    assert third.attempt == 2
    record = store.runs.release(third, reason="dispatch failed", unclaim=True)
    assert record is not None
    assert (record.attempt, record.started_at) == (1, started)  # it had started before
