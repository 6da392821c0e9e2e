"""Heartbeats run what is due, record it, schedule the next run, retry transient failures,
call the flow's hooks, chain flows, and dispatch through the flow's runtime."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from active_data_flow import DataFlow, FlowRunError, RunResult
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.registry import register_runtime
from active_data_flow.runtimes.heartbeat import Executor, FlowStore, Heartbeat, beat, sync
from active_data_flow.runtimes.heartbeat.engine.beat import BackgroundRuns
from active_data_flow.runtimes.heartbeat.runtime import Dispatch
from active_data_flow.runtimes.heartbeat.store import ClaimedRun
from active_data_flow.runtimes.inline import Inline
from active_data_flow.testing import FaultySink
from tests.integration.runtimes.heartbeat.conftest import Clock, memory_flow

RECORDS = [{"id": i} for i in range(7)]


def test_a_beat_runs_the_due_flow_records_the_run_and_schedules_the_next(
    store: FlowStore, sink_name: str
) -> None:
    store.create_flow(memory_flow("copy", RECORDS, sink_name, interval=60, batch_size=3))
    due = store.get_flow("copy").next_run_at
    assert due is not None

    summary = beat(store, worker_id="w1")
    assert (len(summary.claimed), summary.failed, summary.exit_code) == (1, [], 0)
    run = store.get_run(summary.claimed[0])
    assert (run.status, run.worker_id, run.attempt) == ("succeeded", "w1", 1)
    assert (run.read, run.written, run.skipped, run.failed, run.batches) == (7, 7, 0, 0, 3)
    assert (run.cursor_start, run.cursor_end) == (None, 6)
    assert run.started_at
    assert run.ended_at
    assert run.duration_s is not None
    assert MemorySink.records_of(sink_name) == RECORDS

    flow = store.get_flow("copy")
    assert (flow.cursor, flow.last_run_id, flow.last_run_status) == (6, run.id, "succeeded")
    assert flow.next_run_at == due + timedelta(seconds=60)  # the cadence keeps its anchor
    assert beat(store).claimed == []  # nothing due until then
    assert store.last_heartbeat() is not None


def test_the_next_run_resumes_after_the_cursor(
    store: FlowStore, sink_name: str, clock: Clock, make_store: Any
) -> None:
    store = make_store(clock=clock)
    store.create_flow(memory_flow("copy", RECORDS, sink_name, interval=60))
    beat(store)
    clock.advance(61)
    summary = beat(store)
    run = store.get_run(summary.succeeded[0])
    assert (run.read, run.cursor_start, run.cursor_end) == (0, 6, None)
    assert MemorySink.records_of(sink_name) == RECORDS  # nothing read twice


def test_a_failing_flow_fails_only_its_own_run_and_the_others_still_run(
    store: FlowStore, sink_name: str
) -> None:
    class Boom(DataFlow):
        source = MemorySource(records=RECORDS)
        sink = MemorySink(name=sink_name + "-boom")
        runtime = Heartbeat(interval=60)

        def transform(self, message: Any) -> Any:
            if message["id"] == 3:
                raise ValueError("no id 3 here")
            return message

    sync(store, Boom)
    for i in range(3):
        store.create_flow(memory_flow(f"ok_{i}", RECORDS, sink_name, interval=60))

    summary = beat(store)
    assert len(summary.succeeded) == 3
    assert len(summary.failed) == 1
    assert summary.exit_code == 1
    failed = store.get_run(summary.failed[0])
    assert failed.flow == "boom"
    assert failed.status == "failed"
    assert failed.error_type == "builtins.ValueError"
    assert "no id 3 here" in (failed.error or "")
    assert "raise ValueError" in (failed.traceback or "")
    assert failed.attempt == 1  # permanent: not retried
    flow = store.get_flow("boom")
    assert flow.last_error is not None
    assert "no id 3 here" in flow.last_error
    assert flow.next_run_at is not None  # a failed flow stays scheduled
    assert len(MemorySink.records_of(sink_name)) == 3 * len(RECORDS)
    MemorySink.records_of(sink_name + "-boom").clear()


def faulty_flow(store: FlowStore, name: str, fail_on: list[int], **runtime: Any) -> str:
    """A flow into a :class:`FaultySink` (``"faulty"``) failing on flushes ``fail_on``."""
    sink = f"faulty-{uuid.uuid4().hex}"
    assert FaultySink.flush_count(sink) == 0
    store.create_flow({
        "name": name,
        "source": {"type": "memory", "config": {"records": RECORDS}},
        "sink": {"type": "faulty", "config": {"name": sink, "fail_on": fail_on,
                                               "error": runtime.pop("error", "transient")}},
        "runtime": {"type": "heartbeat", "config": {"batch_size": 2, "backoff": 0.01,
                                                    **runtime}},
    })
    store.trigger(name)
    return sink


def test_transient_failures_are_retried_with_backoff_and_lose_nothing(
    store: FlowStore,
) -> None:
    sink = faulty_flow(store, "flaky", fail_on=[2, 3], max_attempts=3)
    summary = beat(store)
    run = store.get_run(summary.succeeded[0])
    assert run.attempt == 3
    assert (run.read, run.written) == (7, 7)  # a retried batch's messages count once
    assert run.error is None  # the retries' errors do not stick to a successful run
    assert [r["id"] for r in MemorySink.records_of(sink)] == list(range(7))  # exactly once
    MemorySink.records_of(sink).clear()


def test_a_run_fails_when_transient_failures_outlast_its_attempts(store: FlowStore) -> None:
    sink = faulty_flow(store, "down", fail_on=[1, 2, 3], max_attempts=3)
    summary = beat(store)
    run = store.get_run(summary.failed[0])
    assert run.attempt == 3
    assert run.error_type == "active_data_flow.errors.ConnectorTimeout"
    assert "injected failure on flush 3" in (run.error or "")
    assert store.get_flow("down").cursor is None  # nothing was written, nothing claimed
    assert MemorySink.records_of(sink) == []


def test_permanent_sink_errors_are_not_retried(store: FlowStore) -> None:
    sink = faulty_flow(store, "broken", fail_on=[2], max_attempts=5, error="permanent")
    summary = beat(store)
    run = store.get_run(summary.failed[0])
    assert (run.attempt, run.read, run.written) == (1, 4, 2)  # read: the failed batch too
    assert store.get_flow("broken").cursor == 1  # the first batch, durable, and no further
    assert [r["id"] for r in MemorySink.records_of(sink)] == [0, 1]
    MemorySink.records_of(sink).clear()


class Hooked(DataFlow):
    """A flow that records its hooks and the run's status as the store had it then."""

    source = MemorySource(records=RECORDS)
    sink = MemorySink(name="hooked")
    runtime = Heartbeat(interval=60)
    fail: ClassVar[bool] = False
    seen: ClassVar[list[tuple[str, Any]]] = []
    store: ClassVar[FlowStore | None] = None

    def transform(self, message: Any) -> Any:
        if self.fail:
            raise KeyError("missing")
        return message

    def after_success(self, result: RunResult) -> None:
        assert self.store is not None
        self.seen.append(("success", self.store.get_flow(self.name).last_run_status))

    def after_failure(self, error: FlowRunError) -> None:
        assert self.store is not None
        self.seen.append(("failure", self.store.get_flow(self.name).last_run_status))


@pytest.mark.parametrize("fail", [False, True])
def test_hooks_are_called_once_after_the_run_is_recorded(store: FlowStore, fail: bool) -> None:
    Hooked.fail, Hooked.store, Hooked.seen = fail, store, []
    sync(store, Hooked)
    beat(store)
    assert Hooked.seen == ([("failure", "failed")] if fail else [("success", "succeeded")])
    MemorySink.records_of("hooked").clear()


def test_a_flow_triggers_the_flows_it_chains_to_when_it_succeeds(
    store: FlowStore, sink_name: str
) -> None:
    first = memory_flow("extract", RECORDS, sink_name, interval=3600)
    store.create_flow({**first, "triggers": ["load", "gone"]})
    store.create_flow(memory_flow("load", [{"id": 99}], sink_name))  # on demand only
    store.create_flow({**first, "name": "gone"})
    store.delete_flow("gone")  # a trigger naming a deleted flow is logged, not fatal

    summary = beat(store)
    assert len(summary.succeeded) == 1
    chained = store.list_runs("load").items[0]
    assert (chained.status, chained.trigger) == ("pending", "chain")
    assert beat(store).succeeded == [chained.id]
    assert MemorySink.records_of(sink_name)[-1] == {"id": 99}


def test_a_background_beat_returns_after_claiming_and_the_run_finishes_later(
    store: FlowStore, sink_name: str
) -> None:
    release = threading.Event()

    class Slow(DataFlow):
        source = MemorySource(records=RECORDS)
        sink = MemorySink(name=sink_name)
        runtime = Heartbeat(interval=60)

        def transform(self, message: Any) -> Any:
            assert release.wait(10)
            return message

    sync(store, Slow)
    background = BackgroundRuns(Executor(store))
    summary = beat(store, background=background)
    assert summary.dispatched == summary.claimed
    assert len(summary.claimed) == 1
    assert store.get_run(summary.claimed[0]).status == "running"
    release.set()
    assert background.wait(10)
    assert store.get_run(summary.claimed[0]).status == "succeeded"
    assert MemorySink.records_of(sink_name) == RECORDS


def test_flows_on_the_inline_runtime_run_on_heartbeats_too(
    store: FlowStore, sink_name: str
) -> None:
    class Plain(DataFlow):
        source = MemorySource(records=RECORDS)
        sink = MemorySink(name=sink_name)
        runtime = Inline(interval=120)

    sync(store, Plain)
    assert len(beat(store).succeeded) == 1
    assert MemorySink.records_of(sink_name) == RECORDS


@register_runtime("test_queue")
class QueueRuntime(Heartbeat):
    """A distributed runtime in miniature: dispatch enqueues the claim, a worker runs it."""

    queue: ClassVar[list[tuple[int, str]]] = []

    def dispatch(self, claim: ClaimedRun, context: Dispatch) -> None:
        self.queue.append((claim.run_id, claim.token))
        context.hand_off(claim)


def test_a_runtime_can_dispatch_claimed_runs_to_another_executor(
    store: FlowStore, sink_name: str
) -> None:
    QueueRuntime.queue = []
    spec = memory_flow("queued", RECORDS, sink_name)
    store.create_flow({**spec, "runtime": {"type": "test_queue", "config": {"interval": 60}}})

    summary = beat(store)
    assert summary.dispatched == summary.claimed
    assert summary.runs == []
    [(run_id, token)] = QueueRuntime.queue
    assert store.get_run(run_id).status == "running"

    elsewhere = Executor(store, worker_id="elsewhere")
    assert elsewhere.execute_run(run_id, token="0" * 32) is None  # wrong claim
    record = elsewhere.execute_run(run_id, token=token)
    assert record is not None
    assert (record.status, record.worker_id, record.written) == ("succeeded", "elsewhere", 7)
    assert Executor(store, worker_id="again").execute_run(run_id, token=token) is None  # once
    assert MemorySink.records_of(sink_name) == RECORDS


def test_a_pending_run_can_be_executed_by_id(store: FlowStore, sink_name: str) -> None:
    store.create_flow(memory_flow("adhoc", RECORDS, sink_name))
    run = store.trigger("adhoc")
    cli = Executor(store, worker_id="cli")
    record = cli.execute_run(run.id)
    assert record is not None
    assert record.status == "succeeded"
    assert cli.execute_run(run.id) is None


def test_executing_a_flow_on_the_heartbeat_runtime_registers_and_triggers_it(
    store: FlowStore, sink_name: str
) -> None:
    class Later(DataFlow):
        source = MemorySource(records=RECORDS)
        sink = MemorySink(name=sink_name)
        runtime = Heartbeat()  # on demand

    pending = Later().spec.build_runtime().execute(Later(), store=store)
    assert (pending.flow, pending.status, pending.trigger) == ("later", "pending", "manual")
    assert MemorySink.records_of(sink_name) == []  # not run yet: a heartbeat runs it
    assert beat(store).succeeded == [pending.id]
    assert MemorySink.records_of(sink_name) == RECORDS
