"""The worker loop: started and stopped from Python, stopped by SIGTERM mid-batch within its
timeout, never leaving a run running; background runs shut down the same way."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow import DataFlow
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.runtimes.heartbeat import Executor, FlowStore, Heartbeat, Worker, beat, sync
from active_data_flow.runtimes.heartbeat.engine.beat import BackgroundRuns
from tests.integration.runtimes.heartbeat import harness, sqlkit
from tests.integration.runtimes.heartbeat.conftest import memory_flow, wait_for

ROWS = 60
BATCH = 10


def statuses(store: FlowStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.text(  # type: ignore[arg-type]
            "SELECT status, count(*) FROM adf_runs GROUP BY status")).all())


def test_starting_and_stopping_the_worker_a_hundred_times_leaks_nothing(
    sqlite_url: str, sink_name: str
) -> None:
    store = FlowStore(sqlite_url, lease_seconds=5)
    store.create_flow(memory_flow("copy", [{"id": 1}], sink_name, interval=0.001))
    threads_before = threading.active_count()
    for _ in range(100):
        beaten = threading.Event()
        worker = Worker(store, interval=0.001, shutdown_timeout=5,
                        on_beat=lambda _summary, beaten=beaten: beaten.set())
        worker.start()
        assert beaten.wait(10)
        assert worker.stop(timeout=10)
        assert not worker.running
    # The lease renewer retires once idle (within a renewal interval).
    wait_for(lambda: threading.active_count() <= threads_before, "the threads to end",
             timeout=store.renew_seconds + 5)
    assert threading.active_count() <= threads_before
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert statuses(store).get("running", 0) == 0
    assert MemorySink.records_of(sink_name) == [{"id": 1}]  # copied once, in 100 lives
    store.close()


def test_stop_lets_the_running_batch_finish_and_gives_the_run_back(
    sqlite_url: str, sink_name: str
) -> None:
    store = FlowStore(sqlite_url, lease_seconds=30)
    in_batch, go_on = threading.Event(), threading.Event()

    class Slow(DataFlow):
        source = MemorySource(records=[{"id": i} for i in range(6)])
        sink = MemorySink(name=sink_name)
        runtime = Heartbeat(interval=3600, batch_size=2)

        def transform(self, message: Any) -> Any:
            if message["id"] == 2:
                in_batch.set()
                assert go_on.wait(10)
            return message

    sync(store, Slow)
    worker = Worker(store, interval=0.05, shutdown_timeout=10)
    worker.start()
    assert in_batch.wait(10)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    go_on.set()
    stopper.join(15)

    [run] = store.list_runs("slow").items
    assert run.status == "pending"  # given back, due now, resumes after the cursor
    assert (run.read, run.written) == (4, 4)
    assert store.get_flow("slow").cursor == 3
    assert beat(store).succeeded == [run.id]
    assert [r["id"] for r in MemorySink.records_of(sink_name)] == list(range(6))
    store.close()


def test_background_runs_shut_down_gracefully(sqlite_url: str, sink_name: str) -> None:
    store = FlowStore(sqlite_url, lease_seconds=30)
    in_batch, never = threading.Event(), threading.Event()

    class Stuck(DataFlow):
        source = MemorySource(records=[{"id": i} for i in range(4)])
        sink = MemorySink(name=sink_name)
        runtime = Heartbeat(interval=3600, batch_size=2)

        def transform(self, message: Any) -> Any:
            if message["id"] == 2:
                in_batch.set()
                never.wait(5)  # a batch that outlasts the shutdown timeout
            return message

    sync(store, Stuck)
    background = BackgroundRuns(Executor(store))
    summary = beat(store, background=background)
    assert in_batch.wait(10)
    assert not background.shutdown(timeout=0.5)  # did not end by itself in time...
    run = store.get_run(summary.claimed[0])
    assert run.status == "pending"  # ...so it was given back, not left running
    never.set()
    store.close()


def start_copy_worker(url: str, *, delay: float, shutdown_timeout: float) -> Any:
    ctx = harness.context()
    ready = ctx.Event()
    child = ctx.Process(target=harness.run_worker, args=(url, 30.0, None, ready),
                        kwargs={"shutdown_timeout": shutdown_timeout})
    child.start()
    assert ready.wait(30)
    return child


@pytest.mark.slow
@pytest.mark.parametrize(("stuck_in", "delay", "timeout"), [("sink", 0.3, 10.0),
                                                           ("source", 5.0, 1.0)])
def test_sigterm_mid_batch_stops_the_worker_within_its_timeout(
    db_url: str, stuck_in: str, delay: float, timeout: float
) -> None:
    """A batch in its sink's transaction completes and checkpoints before the worker exits;
    a batch that outlasts the timeout (stuck reading) is abandoned and its run given back."""
    store = FlowStore(db_url, auto_upgrade=True)
    sqlkit.fill(db_url, "src", ROWS)
    sqlkit.create(db_url, sqlkit.append_table("dst"))
    store.create_flow({
        "name": "copy",
        "source": {"type": "test_table", "config": {
            "url": db_url, "table": "src", "chunk": BATCH,
            "delay": delay if stuck_in == "source" else 0}},
        "sink": {"type": "test_table", "config": {
            "url": db_url, "table": "dst", "delay": delay if stuck_in == "sink" else 0}},
        "runtime": {"type": "heartbeat", "config": {"batch_size": BATCH, "interval": 3600}},
    })
    expect_clean = stuck_in == "sink"
    child = start_copy_worker(db_url, delay=delay, shutdown_timeout=timeout)
    # In the middle of a batch: stuck reading the first chunk (source), or writing the
    # batch after the first durable one (sink).
    if stuck_in == "source":
        wait_for(lambda: store.get_flow("copy").running_run_id is not None, "the run")
    else:
        wait_for(lambda: (store.get_flow("copy").cursor or 0) >= BATCH, "the first batch")

    os.kill(child.pid, signal.SIGTERM)
    sent = time.monotonic()
    child.join(timeout + 10)
    took = time.monotonic() - sent
    assert child.exitcode == 0
    assert took <= timeout + 1.5, f"the worker took {took:.1f}s to stop"
    assert statuses(store).get("running", 0) == 0  # given back, not left running
    run = store.list_runs("copy").items[0]
    assert run.status == "pending"
    if expect_clean:
        assert run.error
        assert "interrupted" in run.error
    cursor = store.get_flow("copy").cursor or 0
    assert sqlkit.ids(db_url, "dst") == list(range(1, cursor + 1))  # no half batch
    store.close()
