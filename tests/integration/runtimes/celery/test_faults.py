"""Faults on real brokers and workers: a worker killed mid-partition, a task delivered again
while its first execution still runs, and two schedulers racing for a minute."""

from __future__ import annotations

import itertools
import signal
import time

import pytest

from active_data_flow.runtimes.celery import CeleryConfig, default_app
from active_data_flow.runtimes.celery.tasks import send_partition
from active_data_flow.runtimes.heartbeat import FlowStore, beat
from active_data_flow.runtimes.heartbeat.store import RunRecord
from tests.integration.runtimes.celery.conftest import LEASE, flow_spec, target_ids, wait_run
from tests.integration.runtimes.celery.harness import Broker, Cluster, wait_for


def _running_part(store: FlowStore, run_id: int, worker: str) -> int | None:
    """The id of a part ``worker`` is executing and has checkpointed at least once."""
    for part in store.list_partitions(run_id):
        if (part.status == "running" and part.cursor is not None
                and (part.worker_id or "").startswith(f"{worker}@")):
            return part.id
    return None


def test_a_worker_killed_mid_partition_is_redelivered_and_the_part_finished(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str
) -> None:
    # Two parts of 4,000 rows, each read in 16 paced batches (about 4 s per part).
    store.create_flow(flow_spec("copy", broker, rows=8000, wait=0.25, every=250,
                                batch_size=250, partitions=2))
    a = cluster.worker("a")
    cluster.worker("b")
    run = store.trigger("copy")
    beat(store)
    victim = wait_for(lambda: _running_part(store, run.id, "a"), 30,
                      "worker a to checkpoint its part")

    a.kill(signal.SIGKILL)  # the whole group: the worker and its pool process
    killed_at = time.monotonic()
    a.popen.wait(5)
    cluster.worker("c")  # a replacement, as an operator (or systemd) would start

    wait_for(lambda: store.get_partition(victim).attempt == 2, 60,
             "the killed part to be claimed again")
    redelivered_after = time.monotonic() - killed_at
    ended = wait_run(store, run.id)

    assert ended.status == "succeeded", cluster.logs()
    part = store.get_partition(victim)
    assert part.status == "succeeded"
    assert not (part.worker_id or "").startswith("a@")
    assert target_ids(data_url) == list(range(8000))  # every row, once (upserted)
    # RabbitMQ requeues at once; the part is taken over when its lease (3 s) expires.
    # Redis requeues after its visibility timeout (6 s here) plus one sweep (1 s). Both
    # bounds leave room for the replacement worker's start on a busy machine.
    bound = LEASE + 9 if broker.kind == "rabbitmq" else 6 + 1 + 9
    print(f"{broker.kind}: killed part claimed again after {redelivered_after:.1f}s")
    assert redelivered_after < bound


def test_a_task_delivered_again_while_it_runs_never_runs_twice_at_once(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str
) -> None:
    # One part of 3,000 rows in 12 paced batches: about 6 s of work.
    store.create_flow(flow_spec("long", broker, rows=3000, wait=0.5, every=250,
                                batch_size=250, partitions=1))
    options: tuple[str, ...] = ()
    if broker.kind == "redis":
        # A visibility timeout far shorter than the part: Redis itself hands the task to
        # another worker (every 2 s) while the first execution is still running.
        options = ("--visibility-timeout", "2", "--restore-interval", "0.5")
    cluster.worker("a", options=options)
    cluster.worker("b", concurrency=2, options=options)
    run = store.trigger("long")
    beat(store)
    part_id = wait_for(lambda: next((p.id for p in store.list_partitions(run.id)
                                     if p.status == "running"), None), 30, "the part to start")
    if broker.kind == "rabbitmq":
        # RabbitMQ redelivers a task held longer than the server's consumer_timeout (30 min,
        # server-wide); the test delivers the same task again instead.
        for _ in range(3):
            send_partition(default_app(), part_id, CeleryConfig(queue=broker.queue))
            time.sleep(0.5)

    ended = wait_run(store, run.id)

    assert ended.status == "succeeded", cluster.logs()
    part = store.get_partition(part_id)
    assert part.attempt == 1  # claimed once: every other delivery found it held, or done
    assert part.read == 3000
    assert "busy: part held by" in cluster.logs()  # the other deliveries did arrive
    assert target_ids(data_url) == list(range(3000))


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_two_schedulers_for_a_minute_create_no_duplicate_runs(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str
) -> None:
    store.create_flow(flow_spec("ticker", broker, rows=2000, batch_size=500, partitions=2,
                                interval=1.0))
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    schedulers = [cluster.scheduler("s1", interval=0.2), cluster.scheduler("s2", interval=0.2)]

    time.sleep(60)
    for scheduler in schedulers:
        scheduler.kill(signal.SIGTERM)
    for scheduler in schedulers:
        scheduler.popen.wait(30)
    runs = [r for r in store.list_runs("ticker", limit=1000).items if r.status != "pending"]
    for r in runs:
        wait_run(store, r.id)
    runs = [store.get_run(r.id) for r in runs]

    assert len(runs) >= 30, cluster.logs()
    assert {r.status for r in runs} == {"succeeded"}, cluster.logs()
    due = [r.due_at for r in runs if r.trigger == "schedule"]
    assert len(due) == len(set(due))  # one run per scheduled slot
    _assert_no_overlap(runs)
    parts = [p for r in runs for p in store.list_partitions(r.id)]
    assert {p.attempt for p in parts} == {1}  # each part executed once
    assert target_ids(data_url) == list(range(2000))
    beats = {w.id for w in store.list_workers()}
    assert len(beats) >= 2  # both schedulers did beat


def _assert_no_overlap(runs: list[RunRecord]) -> None:
    spans = sorted((r.started_at, r.ended_at) for r in runs if r.started_at and r.ended_at)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"runs overlap: {start} < {end}"
