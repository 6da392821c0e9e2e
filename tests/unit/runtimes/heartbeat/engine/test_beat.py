"""One heartbeat: reclaim expired leases, claim what is due (oldest first), dispatch each run
through its runtime, and execute them here (in threads, or in background runs)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from active_data_flow import DataFlow
from active_data_flow import registry as registry_module
from active_data_flow.catalog import FlowCatalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import FlowSpec
from active_data_flow.message import Message
from active_data_flow.runtimes.heartbeat import Heartbeat
from active_data_flow.runtimes.heartbeat.engine.beat import BackgroundRuns, beat
from active_data_flow.runtimes.heartbeat.engine.executor import Executor
from active_data_flow.runtimes.heartbeat.engine.sync import sync
from active_data_flow.runtimes.heartbeat.store import ClaimedRun, MemoryStore
from tests.unit.runtimes.heartbeat.engine.kit import (
    FIVE_PAST,
    LEASE,
    T0,
    Clock,
    rows,
    spec,
    written,
)

WAIT = 5.0  # the longest any test waits for another thread (it fails rather than hangs)


@pytest.fixture
def background(executor: Executor) -> Iterator[BackgroundRuns]:
    runs = BackgroundRuns(executor, threads=2)
    yield runs
    runs.shutdown(timeout=WAIT)


# -- scheduling -------------------------------------------------------------------------
def test_an_interval_flow_runs_once_per_slot_without_bursts(
    store: MemoryStore, executor: Executor, clock: Clock, sink: str
) -> None:
    store.create_flow(spec("tick", rows(1), sink, interval=60))

    first = beat(store, executor=executor)
    assert (len(first.claimed), len(first.succeeded)) == (1, 1)
    assert beat(store, executor=executor).claimed == []  # next slot: T0 + 60 s
    clock.advance(250)  # four slots missed
    late = beat(store, executor=executor)
    assert len(late.succeeded) == 1  # one run, not a burst of four
    assert beat(store, executor=executor).claimed == []
    assert store.get_flow("tick").next_run_at == T0 + timedelta(seconds=300)


def test_a_cron_flow_runs_at_its_times(store: MemoryStore, executor: Executor, clock: Clock,
                                       sink: str) -> None:
    store.create_flow(spec("cron", rows(1), sink, interval="*/5 * * * *"))

    assert beat(store, executor=executor).claimed == []
    clock.set(FIVE_PAST)
    assert len(beat(store, executor=executor).succeeded) == 1
    clock.advance(60)
    assert beat(store, executor=executor).claimed == []
    assert store.get_flow("cron").next_run_at == FIVE_PAST + timedelta(minutes=5)


def test_due_runs_are_claimed_and_executed_oldest_due_first(
    store: MemoryStore, executor: Executor, clock: Clock, sink: str
) -> None:
    store.create_flow(spec("cron", [{"flow": "cron"}], sink, interval="*/5 * * * *"))
    store.create_flow(spec("early", [{"flow": "early"}], sink, interval=3600))
    clock.set(FIVE_PAST + timedelta(seconds=30))
    store.create_flow(spec("late", [{"flow": "late"}], sink, interval=3600))

    oldest = beat(store, executor=executor, limit=1)
    rest = beat(store, executor=executor)

    assert [r.flow for r in oldest.runs] == ["early"]
    assert [r.flow for r in rest.runs] == ["cron", "late"]
    assert written(sink) == [{"flow": "early"}, {"flow": "cron"}, {"flow": "late"}]


def test_the_heartbeat_is_recorded_with_what_it_claimed(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(spec("a", rows(1), sink, interval=60))
    store.create_flow(spec("b", rows(1), sink, interval=60))

    summary = beat(store, executor=executor, worker_id="beater")

    assert (summary.worker_id, summary.started_at, summary.exit_code) == ("beater", T0, 0)
    [worker] = store.list_workers()
    assert (worker.id, worker.beats, worker.last_claimed) == ("beater", 1, 2)
    assert {r.worker_id for r in summary.runs} == {"beater"}
    assert store.last_heartbeat() == T0


def test_a_failed_run_makes_the_exit_code_1(store: MemoryStore, executor: Executor,
                                            sink: str) -> None:
    store.create_flow(spec("bad", rows(1), sink, sink_type="faulty",
                           sink_config={"fail_on": [1]}, interval=60))
    store.create_flow(spec("good", rows(1), f"{sink}-2", interval=60))

    summary = beat(store, executor=executor)

    assert (len(summary.failed), len(summary.succeeded), summary.exit_code) == (1, 1, 1)
    MemorySink.records_of(f"{sink}-2").clear()


# -- concurrency ------------------------------------------------------------------------
def code_flows(store: MemoryStore, flows: FlowCatalog, sink: str,
               transform: Callable[[DataFlow, Message], Any], count: int) -> None:
    """``count`` code flows (``f0``, ``f1``...) of one record each, sharing ``transform``."""
    for index in range(count):
        flow_class = type(f"F{index}", (DataFlow,), {
            "source": MemorySource(records=[{"id": index}]),
            "sinks": [MemorySink(name=sink)], "runtime": Heartbeat(interval=60),
            "transform": transform,
        })
        sync(store, flow_class, flows=flows)


def test_runs_execute_concurrently_up_to_the_concurrency(
    store: MemoryStore, executor: Executor, flows: FlowCatalog, sink: str
) -> None:
    together = threading.Barrier(2, timeout=WAIT)  # passes only if both runs run at once

    def transform(_flow: DataFlow, message: Message) -> Any:
        together.wait()
        return message

    code_flows(store, flows, sink, transform, 2)

    summary = beat(store, executor=executor, concurrency=2)

    assert (len(summary.succeeded), summary.failed) == (2, [])
    assert sorted(r["id"] for r in written(sink)) == [0, 1]


def test_one_run_at_a_time_by_default(store: MemoryStore, executor: Executor,
                                      flows: FlowCatalog, sink: str) -> None:
    threads: list[str] = []

    def transform(_flow: DataFlow, message: Message) -> Any:
        threads.append(threading.current_thread().name)
        return message

    code_flows(store, flows, sink, transform, 3)

    summary = beat(store, executor=executor)

    assert len(summary.succeeded) == 3
    assert threads == [threading.current_thread().name] * 3  # one after the other, here


# -- background runs --------------------------------------------------------------------
def test_background_runs_execute_after_the_beat_returns(
    store: MemoryStore, flows: FlowCatalog, background: BackgroundRuns, sink: str
) -> None:
    release = threading.Event()

    def transform(_flow: DataFlow, message: Message) -> Any:
        assert release.wait(WAIT)
        return message

    code_flows(store, flows, sink, transform, 1)

    summary = beat(store, background=background)

    [run_id] = summary.claimed
    assert (summary.dispatched, summary.succeeded, summary.runs) == ([run_id], [], [])
    assert store.get_run(run_id).status == "running"
    release.set()
    assert background.wait(WAIT)
    assert store.get_run(run_id).status == "succeeded"
    assert background.shutdown(timeout=WAIT)


def test_shutting_down_background_runs_gives_stragglers_back(
    store: MemoryStore, flows: FlowCatalog, background: BackgroundRuns, sink: str
) -> None:
    started, release = threading.Event(), threading.Event()

    def transform(_flow: DataFlow, message: Message) -> Any:
        started.set()
        assert release.wait(WAIT)
        return message

    code_flows(store, flows, sink, transform, 1)
    [run_id] = beat(store, background=background).claimed
    assert started.wait(WAIT)

    assert background.shutdown(timeout=0.05) is False

    released = store.get_run(run_id)
    assert released.status == "pending"
    assert "released: the process stopped" in (released.error or "")
    release.set()
    assert background.wait(WAIT)  # the straggler ends; its late writes are fenced off
    assert store.get_run(run_id).status == "pending"
    assert store.get_flow("f0").cursor is None


def test_runs_claimed_after_a_shutdown_are_given_back(
    store: MemoryStore, background: BackgroundRuns, sink: str
) -> None:
    store.create_flow(spec("late", rows(1), sink, interval=60))
    background.shutdown(timeout=WAIT)

    assert beat(store, background=background).claimed == []  # no capacity once shut down
    [claim] = store.runs.claim_due("racer")  # claimed by a beat that raced the shutdown
    background.submit(claim)

    run = store.get_run(claim.run_id)
    assert (run.status, run.error) == ("pending", "released: background runs are shut down")
    assert written(sink) == []


# -- leases -----------------------------------------------------------------------------
def test_a_beat_reclaims_expired_leases_and_runs_the_recovery(
    store: MemoryStore, executor: Executor, clock: Clock, sink: str
) -> None:
    store.create_flow(spec("copy", rows(3), sink, interval=3600))
    [dead] = store.runs.claim_due("dead-worker")
    store.runs.checkpoint(dead, 0)
    clock.advance(LEASE - 1)
    assert beat(store, executor=executor).reclaimed == []
    clock.advance(2)

    summary = beat(store, executor=executor)

    assert summary.reclaimed == [dead.run_id]
    [recovery] = summary.runs
    assert (recovery.trigger, recovery.status, recovery.cursor_start) == (
        "recovery", "succeeded", 0)
    assert written(sink) == rows(2, start=1)  # resumed after the dead worker's checkpoint
    assert store.get_run(dead.run_id).error_type == "active_data_flow.errors.WorkerLost"


def test_a_beat_claims_only_the_runs_it_can_start(
    store: MemoryStore, executor: Executor, flows: FlowCatalog, sink: str
) -> None:
    held: list[list[int]] = []

    def transform(_flow: DataFlow, message: Message) -> Any:
        held.append(sorted(h.claim.run_id for h in executor.leases.held()))
        return message

    code_flows(store, flows, sink, transform, 2)

    summary = beat(store, executor=executor)

    # One slot: the second run is claimed once the first has ended, never held waiting.
    assert held == [[summary.claimed[0]], [summary.claimed[1]]]
    assert executor.leases.held() == []


def test_a_beat_ends_even_when_runs_keep_falling_due(
    store: MemoryStore, executor: Executor, flows: FlowCatalog, clock: Clock, sink: str
) -> None:
    def transform(_flow: DataFlow, message: Message) -> Any:
        clock.advance(1)
        store.trigger("f0")  # every run asks for another run right after it
        return message

    code_flows(store, flows, sink, transform, 1)

    summary = beat(store, executor=executor)

    # Only what was due when the beat started runs; the rerun waits for the next beat.
    assert len(summary.succeeded) == 1
    assert len(beat(store, executor=executor).succeeded) == 1


# -- dispatch ---------------------------------------------------------------------------
class Queued(Heartbeat):
    """A runtime that hands its runs to another process (like Celery)."""

    type_name: ClassVar[str] = "unit_queued"
    handed: ClassVar[list[int]] = []

    def dispatch(self, claim: ClaimedRun, context: Any) -> None:
        self.handed.append(claim.run_id)
        context.hand_off(claim)


class Broken(Heartbeat):
    """A runtime whose dispatch fails (its broker is down)."""

    type_name: ClassVar[str] = "unit_broken"
    error: ClassVar[Exception] = ConnectionError("broker down")

    def dispatch(self, claim: ClaimedRun, context: Any) -> None:
        raise type(self).error


@pytest.fixture
def test_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test runtimes for this test only."""
    for runtime in (Queued, Broken):
        monkeypatch.setitem(registry_module._runtimes, runtime.type_name, runtime)
    Queued.handed.clear()
    Broken.error = ConnectionError("broker down")


def runtime_flow(name: str, runtime_type: str, sink: str) -> FlowSpec:
    return FlowSpec.parse({**spec(name, rows(1), sink),
                           "runtime": {"type": runtime_type, "config": {"interval": 60}}})


@pytest.mark.usefixtures("test_runtimes")
def test_a_runtime_may_hand_its_runs_to_another_executor(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(runtime_flow("queued", "unit_queued", sink))

    summary = beat(store, executor=executor)

    [run_id] = summary.claimed
    assert (Queued.handed, summary.dispatched, summary.runs) == ([run_id], [run_id], [])
    assert store.get_run(run_id).status == "running"  # held by its dispatch claim
    assert executor.leases.held() == []  # renewed by whoever took it, not here
    assert written(sink) == []


@pytest.mark.usefixtures("test_runtimes")
def test_one_beat_hands_every_due_run_to_its_queue(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    for name in ("one", "two", "three"):
        store.create_flow(runtime_flow(name, "unit_queued", sink))

    summary = beat(store, executor=executor)  # concurrency 1: queued runs take no slot

    assert len(summary.dispatched) == 3
    assert sorted(Queued.handed) == sorted(summary.claimed)


@pytest.mark.usefixtures("test_runtimes")
def test_a_transient_dispatch_failure_leaves_the_run_pending_uncounted(
    store: MemoryStore, executor: Executor, sink: str, caplog: pytest.LogCaptureFixture
) -> None:
    store.create_flow(runtime_flow("broken", "unit_broken", sink))
    caplog.set_level(logging.INFO)

    summary = beat(store, executor=executor)

    [run_id] = summary.claimed
    assert summary.interrupted == [run_id]
    run = store.get_run(run_id)
    assert (run.status, run.error) == (
        "pending", "dispatch failed, retried in 60 s: ConnectionError: broker down")
    # The claim did no work: no attempt counted, no start time (the clock starts with work).
    assert (run.attempt, run.started_at) == (0, None)
    assert run.due_at >= store.now() + timedelta(seconds=59)  # not claimed again every beat
    assert beat(store, executor=executor).claimed == []
    assert executor.leases.held() == []
    [line] = [r for r in caplog.records if r.name.endswith("beat")]
    assert (line.levelname, line.exc_info) == ("WARNING", None)  # one line, no traceback
    assert "dispatch failed (ConnectionError: broker down); still pending" in line.getMessage()


@pytest.mark.usefixtures("test_runtimes")
def test_a_permanent_dispatch_failure_fails_the_run_with_its_cause(
    store: MemoryStore, executor: Executor, sink: str, caplog: pytest.LogCaptureFixture
) -> None:
    Broken.error = ConfigurationError("no Celery broker URL", option="broker_url")
    store.create_flow(runtime_flow("broken", "unit_broken", sink))

    summary = beat(store, executor=executor)

    [run_id] = summary.failed
    run = store.get_run(run_id)
    assert run.status == "failed"
    assert run.error == ("flow 'broken': its run could not be dispatched: "
                         "ConfigurationError: no Celery broker URL")
    assert str(run.error_type).endswith("ConfigurationError")
    [line] = [r for r in caplog.records if r.name.endswith("beat")]
    assert (line.levelname, line.exc_info) == ("ERROR", None)
    assert store.get_flow("broken").next_run_at is not None  # the schedule goes on


def test_a_run_whose_runtime_cannot_be_built_fails_in_the_beat(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.flows.create(runtime_flow("odd", "no_such_runtime", sink))  # stored unchecked
    store.trigger("odd")

    summary = beat(store, executor=executor)

    [record] = summary.runs
    assert (record.status, summary.failed) == ("failed", [record.id])
    assert "its runtime cannot be built: unknown runtime type 'no_such_runtime'" in (
        record.error or "")


def test_a_stopping_beat_claims_nothing(
    store: MemoryStore, executor: Executor, sink: str
) -> None:
    store.create_flow(spec("copy", rows(1), sink, interval=60))
    stop = threading.Event()
    stop.set()

    summary = beat(store, executor=executor, stop=stop)

    assert summary.claimed == []
    assert store.list_runs("copy").items[0].status == "pending"
    assert written(sink) == []


def test_a_beat_without_an_executor_uses_and_closes_its_own(
    store: MemoryStore, sink: str
) -> None:
    store.create_flow(spec("copy", rows(2), sink, interval=60))

    summary = beat(store, worker_id="solo")

    assert [(r.status, r.worker_id) for r in summary.runs] == [("succeeded", "solo")]
    assert written(sink) == rows(2)
