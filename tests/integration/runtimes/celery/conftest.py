"""Fixtures of the Celery runtime tests: a real broker with a queue of the test's own, a
PostgreSQL flow store and data database, and a cluster of real worker processes."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow.catalog import catalog
from active_data_flow.connectors.sqlalchemy import register_database, unregister_database
from active_data_flow.runtimes.celery import create_app, set_default_app
from active_data_flow.runtimes.heartbeat import FlowStore
from active_data_flow.runtimes.heartbeat.store import RunRecord
from tests.conftest import RABBITMQ_HOST, REDIS_HOST, need
from tests.integration.runtimes.celery import flows
from tests.integration.runtimes.celery.harness import Broker, Cluster, wait_for

# Short timeouts keep fault tests fast: a dead worker's part may be taken over after 3 s;
# Redis redelivers an unacknowledged task after 6 s, swept for every second.
LEASE = 3.0
VISIBILITY = 6.0
RESTORE = 1.0


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A broker and a queue name unique to the test; the queue is deleted afterwards."""
    queue = f"adf_t_{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        need("Redis", REDIS_HOST)
        url = f"redis://{REDIS_HOST}/{random.randint(1, 15)}"
    else:
        need("RabbitMQ", RABBITMQ_HOST)
        url = f"amqp://guest:guest@{RABBITMQ_HOST}//"
    yield Broker(request.param, url, queue)
    _delete_queue(url, queue)


def _delete_queue(url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=5) as conn:
        channel = conn.default_channel
        if url.startswith("redis"):
            client = channel.client
            for key in client.scan_iter(match=f"{queue}*"):
                client.delete(key)
        else:
            channel.queue_delete(queue)


@pytest.fixture
def data_url(make_database: Callable[[str], str]) -> Iterator[str]:
    """A fresh PostgreSQL database for the flows' data, named ``data`` for the connectors."""
    url = make_database("postgresql")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    flows.Base.metadata.create_all(engine)
    engine.dispose()
    register_database("data", url)
    yield url
    unregister_database("data")


@pytest.fixture
def store(postgres_url: str) -> Iterator[FlowStore]:
    """A migrated flow store on a fresh PostgreSQL database."""
    catalog.clear()
    store = FlowStore(postgres_url, lease_seconds=LEASE, auto_upgrade=True)
    yield store
    store.close()
    catalog.clear()


@pytest.fixture
def cluster(broker: Broker, store: FlowStore, data_url: str, tmp_path: Path,
            ) -> Iterator[Cluster]:
    """Worker processes for this test (none started yet); all stopped afterwards.

    This process dispatches through an app on the same broker, with the same settings.
    """
    store_url = store.engine.url.render_as_string(hide_password=False)
    cluster = Cluster(broker, store_url, tmp_path, env={
        flows.DATA_ENV: data_url,
        "ADF_CELERY_BROKER_URL": broker.url,
    })
    cluster.worker_options = ("--lease-seconds", str(LEASE), "--visibility-timeout",
                              str(VISIBILITY), "--restore-interval", str(RESTORE))
    app = create_app(broker_url=broker.url, store_url=store_url, lease_seconds=LEASE,
                     visibility_timeout=VISIBILITY, restore_interval=RESTORE, queue=broker.queue)
    set_default_app(app)
    try:
        yield cluster
    finally:
        cluster.close()
        set_default_app(None)


def flow_spec(name: str, broker: Broker, *, rows: int, wait: float = 0.0, every: int = 1000,
              batch_size: int = 1000, **runtime: Any) -> dict[str, Any]:
    """A flow copying ``rows`` range rows into ``celery_target`` (upsert) on Celery."""
    return {
        "name": name,
        "source": {"type": "range", "config": {"stop": rows, "wait": wait, "every": every}},
        "sink": {"type": "sqlalchemy",
                 "config": {"model": "Target", "database": "data", "upsert": True}},
        "runtime": {"type": "celery", "config": {"queue": broker.queue, **runtime}},
        "batch_size": batch_size,
    }


def target_ids(data_url: str) -> list[int]:
    """The ids in ``celery_target``, sorted."""
    engine = sa.create_engine(data_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT id FROM celery_target ORDER BY id"))
                        .scalars())
    finally:
        engine.dispose()


def wait_run(store: FlowStore, run_id: int, timeout: float = 60) -> RunRecord:
    """Wait until run ``run_id`` has ended; return its record."""
    def ended() -> RunRecord | None:
        run = store.get_run(run_id)
        return run if run.ended_at is not None else None

    try:
        record: RunRecord = wait_for(ended, timeout, f"run {run_id} to end", interval=0.2)
    except AssertionError as exc:
        run = store.get_run(run_id)
        parts = [(p.index, p.status, p.attempt, p.error) for p in store.list_partitions(run_id)]
        raise AssertionError(f"{exc}: it is {run.status} (attempt {run.attempt}, worker "
                             f"{run.worker_id}, error {run.error!r}), parts {parts}") from None
    return record
