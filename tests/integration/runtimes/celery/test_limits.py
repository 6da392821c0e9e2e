"""Concurrency limits hold across worker processes: checked from the recorded timestamps."""

from __future__ import annotations

import pytest

from active_data_flow.runtimes.heartbeat import FlowStore, beat
from active_data_flow.runtimes.heartbeat.store import PartitionRecord, RunRecord
from tests.integration.runtimes.celery.conftest import flow_spec, target_ids, wait_run
from tests.integration.runtimes.celery.harness import Broker, Cluster, wait_for

Span = tuple[object, object, str]


def _spans(items: list[PartitionRecord] | list[RunRecord], label: str) -> list[Span]:
    return sorted((i.started_at, i.ended_at, f"{label} {i.id}") for i in items
                  if i.started_at is not None and i.ended_at is not None)


def _overlaps(spans: list[Span]) -> list[tuple[str, str]]:
    """Pairs of spans that overlap in time (spans sorted by start)."""
    found = []
    for i, (_, end, a) in enumerate(spans):
        for start, _, b in spans[i + 1:]:
            if start < end:  # type: ignore[operator]
                found.append((a, b))
    return found


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_twenty_triggers_of_a_flow_limited_to_one_task_never_overlap(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str
) -> None:
    # Every run reads the next 400 ids in two parts; the limit lets one part run at a time
    # although two workers with two processes each are free.
    spec = flow_spec("limited", broker, rows=100_000, wait=0.05, every=100, batch_size=100,
                     partitions=2, concurrency=1)
    spec["source"]["config"]["per_read"] = 400
    store.create_flow(spec)
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    cluster.scheduler("s", interval=0.1)

    for n in range(1, 21):
        store.trigger("limited")
        wait_for(lambda n=n: _claimed(store, n), 60, f"trigger {n} to start its run")
    runs = [wait_run(store, r.id) for r in store.list_runs("limited", limit=100).items]

    assert len(runs) == 20
    assert {r.status for r in runs} == {"succeeded"}, cluster.logs()
    parts = [p for r in runs for p in store.list_partitions(r.id)]
    assert len(parts) == 40
    assert _overlaps(_spans(parts, "partition")) == []
    assert _overlaps(_spans(runs, "run")) == []
    assert len({p.worker_id for p in parts}) >= 2  # several processes took turns
    assert target_ids(data_url) == list(range(20 * 400))


def _claimed(store: FlowStore, n: int) -> bool:
    runs = store.list_runs("limited", limit=100).items
    return len(runs) >= n and all(r.status != "pending" for r in runs)


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_concurrency_group_limits_flows_together_and_unlimited_parts_overlap(
    cluster: Cluster, store: FlowStore, broker: Broker
) -> None:
    grouped = {"partitions": 2, "concurrency_group": "reporting", "group_concurrency": 1}
    for name in ("one", "two"):
        store.create_flow(flow_spec(name, broker, rows=400, wait=0.2, every=100,
                                    batch_size=100, **grouped))
    store.create_flow(flow_spec("free", broker, rows=400, wait=0.2, every=100,
                                batch_size=100, partitions=2))
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)

    grouped_runs = [store.trigger("one"), store.trigger("two")]
    beat(store)
    grouped_runs = [wait_run(store, r.id) for r in grouped_runs]
    free = store.trigger("free")
    beat(store)
    free_run = wait_run(store, free.id)

    assert {r.status for r in [*grouped_runs, free_run]} == {"succeeded"}, cluster.logs()
    parts = [p for r in grouped_runs for p in store.list_partitions(r.id)]
    assert len(parts) == 4
    assert _overlaps(_spans(parts, "partition")) == []
    # Without a limit, the two parts of one run do run at the same time on these workers.
    assert _overlaps(_spans(store.list_partitions(free_run.id), "partition")) != []
