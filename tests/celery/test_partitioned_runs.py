"""Partitioned runs on real workers: split, executed in parallel, recorded, completed once."""

from __future__ import annotations

from active_data_flow.runtimes.celery._store_draft import PartitionedStore
from active_data_flow.runtimes.heartbeat import beat
from tests.celery.conftest import flow_spec, target_ids
from tests.celery.harness import Broker, Cluster, wait_for


def test_a_partitioned_run_is_split_run_by_two_workers_and_completed(
    cluster: Cluster, store: PartitionedStore, broker: Broker, data_url: str
) -> None:
    store.create_flow(flow_spec("copy", broker, rows=6000, wait=0.05, batch_size=500,
                                partitions=4))
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    run = store.trigger("copy")
    summary = beat(store)
    assert summary.dispatched == [run.id]

    ended = wait_for(lambda: (r := store.get_run(run.id)).ended_at and r, 60,
                     "the run to end", interval=0.2)

    assert ended.status == "succeeded", cluster.logs()
    parts = store.list_partitions(run.id)
    assert [p.status for p in parts] == ["succeeded"] * 4
    assert [p.cursor_start for p in parts] == [None] * 4
    assert sum(p.read for p in parts) == ended.read == 6000
    assert len({p.worker_id for p in parts}) >= 2  # parallel: more than one process worked
    assert target_ids(data_url) == list(range(6000))
    assert store.get_flow("copy").cursor == 5999
