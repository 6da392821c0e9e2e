"""The executor: a claimed run (or part) resumes from its cursor, checkpoints after every
batch, retries transient failures with backoff, records its outcome once, calls the flow's
hooks once, chains, and stops writing the moment its claim is lost (on the memory store)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from active_data_flow import DataFlow, FlowRunError, FlowSpec, RunResult
from active_data_flow.catalog import FlowCatalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import RunClaimLost
from active_data_flow.message import Message
from active_data_flow.runtimes.heartbeat import Heartbeat
from active_data_flow.runtimes.heartbeat.engine.executor import (
    Executor,
    RunContext,
    current_run,
)
from active_data_flow.runtimes.heartbeat.engine.sync import sync
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedPartition,
    MemoryStore,
    RunCounts,
)
from tests.unit.runtimes.heartbeat.engine.kit import LEASE, Clock, claim, rows, spec, written

TRANSIENT = {"error": "transient"}


@pytest.fixture
def code_flow(store: MemoryStore, flows: FlowCatalog) -> Callable[[type[DataFlow]], str]:
    """Register a code-defined flow in the test's catalog and in the store; its name."""
    def install(flow_class: type[DataFlow]) -> str:
        report = sync(store, flow_class, flows=flows)
        assert report.ok, report.errors
        return flow_class.name

    return install


# -- resuming and checkpointing ---------------------------------------------------------
def test_a_run_resumes_after_the_flows_cursor(store: MemoryStore, executor: Executor,
                                              sink: str) -> None:
    store.create_flow(spec("copy", rows(6), sink, batch_size=2, interval=60))
    store.reset_cursor("copy", 2)

    record = executor.execute(claim(store))

    assert record is not None
    assert written(sink) == rows(3, start=3)
    assert (record.status, record.cursor_start, record.cursor_end) == ("succeeded", 2, 5)
    assert (record.read, record.written, record.batches, record.attempt) == (3, 3, 2, 1)
    assert store.get_flow("copy").cursor == 5


def test_each_batch_is_written_then_checkpointed(store: MemoryStore, executor: Executor,
                                                 sink: str, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    store.create_flow(spec("copy", rows(5), sink, batch_size=2, interval=60))
    saved: list[tuple[Any, int]] = []
    original = store.runs.checkpoint

    def checkpoint(claimed: Any, cursor: Any, conn: Any = None, **counts: Any) -> None:
        saved.append((cursor, len(written(sink))))
        original(claimed, cursor, conn, **counts)

    monkeypatch.setattr(store.runs, "checkpoint", checkpoint)

    record = executor.execute(claim(store))

    assert record is not None
    assert record.batches == 3
    assert saved == [(1, 2), (3, 4), (4, 5)]  # each cursor after its batch is durable


def test_a_run_of_an_exhausted_source_succeeds_with_nothing_to_do(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(spec("copy", rows(2), sink, interval=60))
    store.reset_cursor("copy", 1)

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.read, record.batches, record.cursor_end) == (
        "succeeded", 0, 0, None)
    assert store.get_flow("copy").cursor == 1
    assert written(sink) == []


# -- failures ---------------------------------------------------------------------------
def test_transient_failures_are_retried_with_backoff_until_the_run_succeeds(
    store: MemoryStore, executor: Executor, sink: str, waits: list[float | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.create_flow(spec("copy", rows(4), sink, sink_type="faulty",
                           sink_config={"fail_on": [1, 2], **TRANSIENT}, batch_size=2,
                           interval=60, max_attempts=3, backoff=1))
    notes: list[str] = []
    original = store.runs.progress

    def progress(claimed: Any, counts: RunCounts, **note: Any) -> bool:
        if note.get("error"):
            notes.append(note["error"])
        return original(claimed, counts, **note)

    monkeypatch.setattr(store.runs, "progress", progress)

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.attempt, record.error, record.error_type) == (
        "succeeded", 3, None, None)
    assert waits == [1.0, 2.0]
    assert [n.split(":")[0] for n in notes] == [
        "attempt 1 failed, retrying in 1.0s", "attempt 2 failed, retrying in 2.0s"]
    assert written(sink) == rows(4)  # each record once
    assert (record.written, record.batches, record.cursor_end) == (4, 2, 3)


def test_a_transient_failure_fails_the_run_after_max_attempts(
    store: MemoryStore, executor: Executor, sink: str, waits: list[float | None]
) -> None:
    store.create_flow(spec("copy", rows(4), sink, sink_type="faulty",
                           sink_config={"fail_on": [1, 2, 3], **TRANSIENT}, interval=60,
                           max_attempts=3, backoff=1))

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.attempt) == ("failed", 3)
    assert record.error_type == "active_data_flow.errors.ConnectorTimeout"
    assert "injected failure on flush 3" in (record.error or "")
    assert waits == [1.0, 2.0]
    assert written(sink) == []
    assert store.get_flow("copy").cursor is None


def test_the_backoff_doubles_up_to_its_maximum(
    store: MemoryStore, executor: Executor, sink: str, waits: list[float | None]
) -> None:
    store.create_flow(spec("copy", rows(1), sink, sink_type="faulty",
                           sink_config={"fail_on": [1, 2, 3], **TRANSIENT}, interval=60,
                           max_attempts=4, backoff=1, backoff_max=1.5))

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.attempt) == ("succeeded", 4)
    assert waits == [1.0, 1.5, 1.5]


def test_a_permanent_error_fails_the_run_at_once_keeping_the_committed_batches(
    store: MemoryStore, make_executor: Callable[..., Executor], sink: str,
    waits: list[float | None],
) -> None:
    store.create_flow(spec("copy", rows(4), sink, sink_type="faulty",
                           sink_config={"fail_on": [2]}, batch_size=2, max_attempts=3))
    store.trigger("copy")
    executor = make_executor()

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.attempt, record.written) == ("failed", 1, 2)
    assert record.error_type == "active_data_flow.errors.SinkError"
    assert waits == []
    assert written(sink) == rows(2)
    assert store.get_flow("copy").cursor == 1
    store.trigger("copy")
    again = executor.execute(claim(store))
    assert again is not None
    assert (again.status, again.cursor_start) == ("succeeded", 1)
    assert written(sink) == rows(4)  # resumed after the last checkpoint: nothing twice


def test_a_transform_error_fails_the_run_naming_the_message(
    store: MemoryStore, executor: Executor, sink: str,
    code_flow: Callable[[type[DataFlow]], str],
) -> None:
    class Picky(DataFlow):
        source = MemorySource(records=rows(5))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=60)
        batch_size = 2

        def transform(self, message: Message) -> Any:
            if message["id"] == 3:
                raise ValueError("no threes")
            return message

    code_flow(Picky)

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.attempt, record.error_type) == (
        "failed", 1, "builtins.ValueError")
    assert (record.error or "").startswith(
        "ValueError: no threes (flow 'picky' failed at message 4 (position 3, key 3) after "
        "reading 4 message(s) and writing 2; resume after cursor 1)")
    assert "raise ValueError" in (record.traceback or "")
    assert written(sink) == rows(2)
    assert store.get_flow("picky").cursor == 1


# -- losing the claim, stopping ---------------------------------------------------------
def test_a_lost_claim_writes_nothing_more(
    store: MemoryStore, executor: Executor, clock: Clock, sink: str,
    code_flow: Callable[[type[DataFlow]], str],
) -> None:
    calls: list[Any] = []

    class Slow(DataFlow):
        source = MemorySource(records=rows(6))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=60)
        batch_size = 2

        def transform(self, message: Message) -> Any:
            if message["id"] == 2:  # the worker stalls; another takes the run over
                clock.advance(LEASE + 1)
                store.runs.reclaim_expired()
                executor.leases.renew_now()
            return message

        def after_failure(self, error: FlowRunError) -> None:
            calls.append(error)

    code_flow(Slow)
    claimed = claim(store)

    assert executor.execute(claimed) is None

    assert written(sink) == rows(2)  # the batch read after the loss was not written
    assert store.get_flow("slow").cursor == 1
    lost = store.get_run(claimed.run_id)
    assert (lost.status, lost.error_type) == ("failed", "active_data_flow.errors.WorkerLost")
    assert [r.trigger for r in store.list_runs("slow", "pending").items] == ["recovery"]
    assert calls == []  # the run's end is not this worker's to report
    assert executor.leases.held() == []


def test_a_checkpoint_after_the_claim_was_lost_is_refused(
    store: MemoryStore, executor: Executor, clock: Clock, sink: str,
    code_flow: Callable[[type[DataFlow]], str],
) -> None:
    class Stalls(DataFlow):
        source = MemorySource(records=rows(4))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=60)
        batch_size = 2

        def transform(self, message: Message) -> Any:
            if message["id"] == 2:  # reclaimed, and the renewer has not noticed yet
                clock.advance(LEASE + 1)
                store.runs.reclaim_expired()
            return message

    code_flow(Stalls)
    claimed = claim(store)

    assert executor.execute(claimed) is None

    assert store.get_flow("stalls").cursor == 1
    assert store.get_run(claimed.run_id).status == "failed"


def test_a_stop_gives_the_run_back_pending_at_its_last_checkpoint(
    store: MemoryStore, executor: Executor, clock: Clock, sink: str,
    code_flow: Callable[[type[DataFlow]], str],
) -> None:
    stop = threading.Event()

    class Long(DataFlow):
        source = MemorySource(records=rows(6))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=3600)
        batch_size = 2

        def transform(self, message: Message) -> Any:
            if message["id"] == 0:
                stop.set()  # the worker is asked to stop during the first batch
            return message

    code_flow(Long)
    clock.advance(1)

    record = executor.execute(claim(store), stop=stop)

    assert record is not None
    assert (record.status, record.due_at, record.read, record.written, record.batches) == (
        "pending", clock.now, 2, 2, 1)
    assert (record.error or "").startswith("interrupted: the worker stopped")
    assert store.get_flow("long").cursor == 1
    assert written(sink) == rows(2)
    again = executor.execute(claim(store, "w2"))
    assert again is not None
    assert (again.id, again.status, again.attempt, again.read, again.batches) == (
        record.id, "succeeded", 2, 6, 3)
    assert written(sink) == rows(6)


def test_a_run_claimed_by_a_stopping_worker_is_released_unstarted(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(spec("copy", rows(2), sink, interval=60))
    stop = threading.Event()
    stop.set()

    record = executor.execute(claim(store), stop=stop)

    assert record is not None
    assert (record.status, record.read) == ("pending", 0)
    assert "released unstarted" in (record.error or "")
    assert written(sink) == []
    assert claim(store).attempt == 2


# -- after the run ----------------------------------------------------------------------
def test_hooks_are_called_once_after_the_outcome_is_recorded(
    store: MemoryStore, executor: Executor, sink: str,
    code_flow: Callable[[type[DataFlow]], str],
) -> None:
    seen: list[tuple[str, Any, str]] = []

    class Hooked(DataFlow):
        source = MemorySource(records=rows(4))
        sinks = [{"type": "faulty", "config": {"name": sink, "fail_on": [1, 3],
                                                 "error": "transient"}}]
        runtime = Heartbeat(interval=60, max_attempts=2, backoff=0)
        batch_size = 2

        def after_success(self, result: RunResult) -> None:
            seen.append(("success", result, store.get_flow("hooked").last_run_status or ""))

        def after_failure(self, error: FlowRunError) -> None:
            seen.append(("failure", error, store.get_flow("hooked").last_run_status or ""))

    code_flow(Hooked)

    first = executor.execute(claim(store))  # flush 1 fails, then 2 and 3... 3 fails again
    assert first is not None
    assert first.status == "failed"
    store.trigger("hooked")
    second = executor.execute(claim(store))
    assert second is not None
    assert second.status == "succeeded"

    assert [(kind, status) for kind, _, status in seen] == [
        ("failure", "failed"), ("success", "succeeded")]
    failure, success = seen[0][1], seen[1][1]
    assert isinstance(failure, FlowRunError)
    assert "injected failure on flush 3" in str(failure)
    assert isinstance(success, RunResult)
    assert (success.flow, success.read, success.written, success.batches, success.cursor) == (
        "hooked", 2, 2, 1, 3)


def test_a_success_queues_the_flows_it_triggers(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(spec("first", rows(1), sink, triggers=["second"]))
    store.create_flow(spec("second", rows(1, start=1), sink))
    store.trigger("first")

    executor.execute(claim(store))

    chained = claim(store)
    assert (chained.flow.name, chained.trigger) == ("second", "chain")
    executor.execute(chained)
    assert written(sink) == rows(2)


def test_a_paused_flows_chained_run_is_not_queued(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(spec("first", rows(1), sink, triggers=["second"]))
    store.create_flow(spec("second", rows(1), sink), paused=True)
    store.trigger("first")

    record = executor.execute(claim(store))

    assert record is not None
    assert record.status == "succeeded"
    assert store.list_runs("second").total == 0


def test_a_failed_run_chains_nothing(store: MemoryStore, executor: Executor, sink: str) -> None:
    store.create_flow(spec("first", rows(1), sink, sink_type="faulty",
                           sink_config={"fail_on": [1]}, triggers=["second"]))
    store.create_flow(spec("second", rows(1), f"{sink}-2"))
    store.trigger("first")

    executor.execute(claim(store))

    assert store.list_runs("second").total == 0


# -- code -------------------------------------------------------------------------------
def test_an_unloadable_code_flow_fails_its_run_with_a_code_error(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    class Gone(DataFlow):
        source = MemorySource(records=rows(1))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=60)

    store.flows.register_code(Gone.flow_spec())  # stored, but this process never loaded it

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.error_type) == (
        "failed", "active_data_flow.runtimes.heartbeat.store.records.FlowCodeError")
    assert "flow 'gone' is defined in code, but it is not defined by any loaded module" in (
        record.error or "")
    assert store.get_flow("gone").code_error == record.error
    assert written(sink) == []


def test_a_code_flow_whose_code_differs_from_the_stored_spec_is_refused(
    store: MemoryStore, executor: Executor, flows: FlowCatalog, sink: str,
    code_flow: Callable[[type[DataFlow]], str],
) -> None:
    class Drifting(DataFlow):
        source = MemorySource(records=rows(2))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=60)

    code_flow(Drifting)
    Drifting.batch_size = 1  # deployed code changed; `adf sync` has not run

    record = executor.execute(claim(store))

    assert record is not None
    assert record.status == "failed"
    assert "describes the flow differently from the store" in (record.error or "")
    assert store.get_flow("drifting").code_error == record.error
    assert written(sink) == []
    assert sync(store, Drifting, flows=flows).updated == ["drifting"]
    assert store.get_flow("drifting").code_error is None
    store.trigger("drifting")
    again = executor.execute(claim(store))
    assert again is not None
    assert (again.status, again.batches) == ("succeeded", 2)


def test_a_spec_flow_runs_the_transform_of_the_code_flow_it_names(
    store: MemoryStore, executor: Executor, flows: FlowCatalog, sink: str
) -> None:
    class Doubler(DataFlow):
        source = MemorySource(records=[])
        sink = MemorySink(name="unused")

        def transform(self, message: Message) -> Any:
            return {"id": message["id"] * 2}

    flows.register(Doubler)
    store.create_flow(spec("stored", rows(3), sink, transform="doubler"))
    # A stored spec whose borrowed transform is no longer loaded (the facade would refuse
    # to store it now).
    store.flows.create(FlowSpec.parse(spec("orphan", rows(3), f"{sink}-2", transform="nobody")))
    store.trigger("stored")
    store.trigger("orphan")

    records = {r.flow: r for r in (executor.execute(c) for c in store.runs.claim_due("w1"))
               if r is not None}

    assert records["stored"].status == "succeeded"
    assert written(sink) == [{"id": 0}, {"id": 2}, {"id": 4}]
    assert records["orphan"].status == "failed"
    assert "uses the transform of code flow 'nobody'" in (records["orphan"].error or "")


def test_current_run_names_the_run_being_executed(
    store: MemoryStore, executor: Executor, sink: str,
    code_flow: Callable[[type[DataFlow]], str],
) -> None:
    seen: list[RunContext | None] = []

    class Curious(DataFlow):
        source = MemorySource(records=rows(1))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=60)

        def transform(self, message: Message) -> Any:
            seen.append(current_run())
            return message

    code_flow(Curious)
    claimed = claim(store)

    executor.execute(claimed)

    assert seen == [RunContext(claimed.run_id, "curious", "w1", 1, store)]
    assert current_run() is None


# -- entry points -----------------------------------------------------------------------
def test_execute_run_claims_a_run_by_id_or_adopts_it_with_its_token(
    store: MemoryStore, make_executor: Callable[..., Executor], sink: str
) -> None:
    store.create_flow(spec("copy", rows(1), sink, interval="*/5 * * * *"))
    [pending] = store.list_runs("copy", "pending").items
    executor = make_executor("w2")

    record = executor.execute_run(pending.id)  # not due yet: claimed by id all the same

    assert record is not None
    assert (record.status, record.worker_id) == ("succeeded", "w2")
    assert executor.execute_run(pending.id) is None  # finished
    store.trigger("copy")
    dispatched = claim(store, "dispatcher")
    assert executor.execute_run(dispatched.run_id, token="wrong") is None
    adopted = executor.execute_run(dispatched.run_id, token=dispatched.token)
    assert adopted is not None
    assert (adopted.status, adopted.worker_id) == ("succeeded", "w2")


def test_parts_execute_on_their_own_and_the_last_ends_the_run(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(spec("split", rows(4), sink, interval=60, batch_size=1))
    run = claim(store)
    parts = [({"type": "memory", "config": {"records": rows(4)[:2]}}, None),
             ({"type": "memory", "config": {"records": rows(4)}}, 1)]
    ids = store.partitions.open(run, parts, cursor_start=None, hold_seconds=60)
    assert ids is not None

    outcomes = []
    for partition_id in ids:
        part = store.partitions.claim(partition_id, "w1")
        assert isinstance(part, ClaimedPartition)
        outcomes.append(executor.execute_part(part))

    assert [(o.record is None, o.lost, o.again_in) for o in outcomes] == [
        (True, False, None), (False, False, None)]
    record = outcomes[1].record
    assert record is not None
    assert (record.id, record.status, record.read, record.written, record.cursor_end) == (
        run.run_id, "succeeded", 4, 4, 3)
    assert written(sink) == rows(4)
    assert store.get_flow("split").cursor == 3


def test_a_part_failing_transiently_goes_back_to_its_queue(
    store: MemoryStore, executor: Executor, sink: str, waits: list[float | None]
) -> None:
    store.create_flow(spec("split", rows(2), sink, sink_type="faulty",
                           sink_config={"fail_on": [1], **TRANSIENT}, interval=60,
                           backoff=3))
    run = claim(store)
    [partition_id] = store.partitions.open(
        run, [({"type": "memory", "config": {"records": rows(2)}}, None)],
        cursor_start=None, hold_seconds=60) or []

    part = store.partitions.claim(partition_id, "w1")
    assert isinstance(part, ClaimedPartition)
    outcome = executor.execute_part(part)

    assert (outcome.record, outcome.again_in, outcome.lost) == (None, 3.0, False)
    assert waits == []  # the part waits in its queue, not in this thread
    pending = store.get_partition(partition_id)
    assert pending.status == "pending"
    assert (pending.error or "").startswith("attempt 1 failed, retrying in 3.0s")
    again = store.partitions.claim(partition_id, "w2")
    assert isinstance(again, ClaimedPartition)
    final = executor.execute_part(again).record
    assert final is not None
    assert final.status == "succeeded"
    assert written(sink) == rows(2)


def test_a_lost_part_reports_lost(store: MemoryStore, executor: Executor, clock: Clock,
                                  sink: str) -> None:
    store.create_flow(spec("split", rows(2), sink, interval=60))
    run = claim(store)
    [partition_id] = store.partitions.open(
        run, [({"type": "memory", "config": {"records": rows(2)}}, None)],
        cursor_start=None, hold_seconds=600) or []
    part = store.partitions.claim(partition_id, "w1")
    assert isinstance(part, ClaimedPartition)
    clock.advance(LEASE + 1)
    assert isinstance(store.partitions.claim(partition_id, "w2"), ClaimedPartition)

    outcome = executor.execute_part(part)

    assert (outcome.record, outcome.lost) == (None, True)
    with pytest.raises(RunClaimLost):
        store.partitions.checkpoint(part, 1)
