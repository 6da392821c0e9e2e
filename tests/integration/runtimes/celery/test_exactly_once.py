"""With the flow's data in the store's own database, a part's batches and checkpoints commit
together: a worker killed mid-partition leaves nothing written twice, even without upsert."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from active_data_flow.connectors.sqlalchemy import register_database, unregister_database
from active_data_flow.runtimes.heartbeat import FlowStore, beat
from tests.integration.runtimes.celery import flows
from tests.integration.runtimes.celery.conftest import flow_spec, target_ids, wait_run
from tests.integration.runtimes.celery.harness import Broker, Cluster, wait_for


@pytest.fixture
def data_url(store: FlowStore) -> Iterator[str]:
    """The store's own database, holding the target table too."""
    url = store.engine.url.render_as_string(hide_password=False)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    flows.Base.metadata.create_all(engine)
    engine.dispose()
    register_database("data", url)
    yield url
    unregister_database("data")


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_a_killed_part_resumes_from_a_checkpoint_committed_with_its_batch(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str
) -> None:
    spec = flow_spec("insert_only", broker, rows=4000, wait=0.25, every=250, batch_size=250,
                     partitions=2)
    spec["sink"]["config"]["upsert"] = False  # a row written twice would violate the key
    store.create_flow(spec)
    a = cluster.worker("a")
    cluster.worker("b")
    run = store.trigger("insert_only")
    beat(store)
    wait_for(lambda: any(p.status == "running" and p.cursor is not None
                         and (p.worker_id or "").startswith("a@")
                         for p in store.list_partitions(run.id)), 30, "a's part to progress")

    a.kill(signal.SIGKILL)

    ended = wait_run(store, run.id)
    assert ended.status == "succeeded", cluster.logs()
    assert [p.status for p in store.list_partitions(run.id)] == ["succeeded"] * 2
    assert max(p.attempt for p in store.list_partitions(run.id)) == 2
    assert target_ids(data_url) == list(range(4000))
