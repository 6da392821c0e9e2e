"""The worker loop: beats until stopped; a stop is graceful (running runs end their batch and
go back pending; runs that miss the shutdown timeout are released anyway)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from active_data_flow import DataFlow
from active_data_flow.catalog import FlowCatalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.message import Message
from active_data_flow.runtimes.heartbeat import Heartbeat
from active_data_flow.runtimes.heartbeat.engine.beat import BeatSummary
from active_data_flow.runtimes.heartbeat.engine.sync import sync
from active_data_flow.runtimes.heartbeat.engine.worker import Worker
from active_data_flow.runtimes.heartbeat.store import MemoryStore
from tests.unit.runtimes.heartbeat.engine.kit import LEASE, Clock, rows, spec, written

WAIT = 5.0


@pytest.fixture
def make_worker(store: MemoryStore, flows: FlowCatalog) -> Iterator[Callable[..., Worker]]:
    """Factory: a worker on ``store`` running the test's code flows; stopped afterwards."""
    made: list[Worker] = []

    def make(**options: Any) -> Worker:
        options.setdefault("interval", 0.01)
        options.setdefault("worker_id", "w1")
        worker = Worker(store, **options)
        worker.executor.flows = flows
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop(timeout=WAIT)


def blocking_flow(store: MemoryStore, flows: FlowCatalog, sink: str, started: threading.Event,
                  release: threading.Event) -> str:
    """A code flow of 6 records in batches of 2 whose first message waits for ``release``."""

    class Blocking(DataFlow):
        source = MemorySource(records=rows(6))
        sinks = [MemorySink(name=sink)]
        runtime = Heartbeat(interval=3600)
        batch_size = 2

        def transform(self, message: Message) -> Any:
            if message["id"] == 0:
                started.set()
                assert release.wait(WAIT)
            return message

    sync(store, Blocking, flows=flows)
    return Blocking.name


def test_a_worker_beats_until_stopped(store: MemoryStore, make_worker: Callable[..., Worker],
                                      sink: str) -> None:
    store.create_flow(spec("copy", rows(3), sink, interval=60))
    ran = threading.Event()
    summaries: list[BeatSummary] = []

    def on_beat(summary: BeatSummary) -> None:
        summaries.append(summary)
        if summary.succeeded:
            ran.set()

    worker = make_worker(on_beat=on_beat)
    worker.start()
    worker.start()  # already running: one loop

    assert ran.wait(WAIT)
    assert worker.running
    assert worker.stop() is True

    assert (worker.running, worker.stopping) == (False, True)
    assert worker.beats == len(summaries) >= 1
    assert worker.last_summary == summaries[-1]
    assert written(sink) == rows(3)
    assert store.list_runs("copy", "succeeded").total == 1
    assert store.list_workers()[0].id == "w1"
    assert [t for t in threading.enumerate() if t.name.startswith("adf-worker")] == []


def test_a_graceful_stop_gives_the_running_run_back_at_its_checkpoint(
    store: MemoryStore, flows: FlowCatalog, make_worker: Callable[..., Worker], sink: str
) -> None:
    started, release = threading.Event(), threading.Event()
    name = blocking_flow(store, flows, sink, started, release)
    worker = make_worker()
    worker.start()
    assert started.wait(WAIT)

    worker.request_stop()
    release.set()  # the first batch ends; the run stops there
    assert worker.stop() is True

    [run] = store.list_runs(name).items
    assert (run.status, run.read, run.written, run.batches) == ("pending", 2, 2, 1)
    assert (run.error or "").startswith("interrupted: the worker stopped")
    assert store.get_flow(name).cursor == 1
    assert written(sink) == rows(2)


def test_runs_that_miss_the_shutdown_timeout_are_released(
    store: MemoryStore, flows: FlowCatalog, make_worker: Callable[..., Worker], sink: str
) -> None:
    started, release = threading.Event(), threading.Event()
    name = blocking_flow(store, flows, sink, started, release)
    worker = make_worker(shutdown_timeout=0.05)
    worker.start()
    assert started.wait(WAIT)

    assert worker.stop() is False  # the run is stuck in its transform

    [run] = store.list_runs(name).items
    assert run.status == "pending"
    assert "released: the worker stopped before the run reached a checkpoint" in (
        run.error or "")
    release.set()
    loop = worker._loop_thread
    assert loop is not None
    loop.join(WAIT)  # the stuck run ends; its late writes are fenced off
    assert not loop.is_alive()
    assert store.get_run(run.id).status == "pending"
    assert store.get_flow(name).cursor is None


def test_sigterm_stops_a_worker_running_in_the_main_thread(
    store: MemoryStore, make_worker: Callable[..., Worker], sink: str
) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")
    previous = signal.getsignal(signal.SIGTERM)
    store.create_flow(spec("copy", rows(1), sink, interval=60))
    worker = make_worker(on_start=lambda _worker: os.kill(os.getpid(), signal.SIGTERM))

    assert worker.run(install_signal_handlers=True) is True

    assert worker.stopping
    assert not worker.running
    assert signal.getsignal(signal.SIGTERM) is previous


def test_starting_and_stopping_leaves_no_thread_and_no_run_behind(
    store: MemoryStore, make_worker: Callable[..., Worker], sink: str
) -> None:
    store.create_flow(spec("copy", rows(1), sink, interval=0.001))
    before = set(threading.enumerate())

    for _ in range(20):
        worker = make_worker()
        worker.start()
        assert worker.stop() is True

    assert store.list_runs(status="running").total == 0
    assert {t for t in threading.enumerate() if t not in before and t.is_alive()} == set()
    MemorySink.records_of(sink).clear()


def test_a_waiting_worker_beats_right_after_a_lease_runs_out(
    store: MemoryStore, clock: Clock, make_worker: Callable[..., Worker]
) -> None:
    """A dead worker's run is reclaimed by the first beat after its lease expires, not up to a
    whole interval later: the wait between beats ends just after the earliest expiry."""
    worker = make_worker(interval=60)
    assert worker._pause() == 60  # nothing running: the regular interval
    store.create_flow(spec("orphan", rows(2), "orphan_sink", interval=3600))
    store.runs.claim_due("gone")  # its worker dies: nobody renews the lease
    assert worker._pause() == pytest.approx(LEASE + 0.2)
    clock.advance(LEASE - 1)
    assert worker._pause() == pytest.approx(1.2)
    clock.advance(5)  # expired, not reclaimed yet: beat almost at once
    assert worker._pause() == pytest.approx(0.2)
