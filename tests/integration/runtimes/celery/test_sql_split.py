"""The SQLAlchemy source splits by ranges of its cursor key, and partitioned SQL flows copy
PostgreSQL -> PostgreSQL on real workers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow.connector import Partition
from active_data_flow.connectors.sqlalchemy import SqlAlchemySource
from active_data_flow.runtimes.heartbeat import FlowStore, beat
from tests.integration.runtimes.celery.conftest import flow_spec, target_ids, wait_run
from tests.integration.runtimes.celery.flows import Origin
from tests.integration.runtimes.celery.harness import Broker, Cluster

START = datetime(2026, 1, 1)


def fill(url: str, ids: list[int]) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.insert(Origin), [
            {"id": i, "v": f"v{i}", "at": START + timedelta(minutes=i % 97)} for i in ids])
    engine.dispose()


def read(parts: list[Partition]) -> list[list[Any]]:
    """Each partition's ids, read through a spec round trip (as a worker would)."""
    out = []
    for part in parts:
        source = SqlAlchemySource.from_dict(part.source.to_dict())
        out.append([m["id"] for m in source.each(part.cursor)])
        source.close()
    return out


# Skewed keys: a dense run of small ids, then sparse large ones.
IDS = list(range(3000)) + list(range(10_000, 1_000_000, 1000))


@pytest.mark.parametrize("cursor_column", [None, ["at", "id"]])
def test_a_sql_source_splits_into_even_disjoint_ranges_of_its_key(
    data_url: str, cursor_column: list[str] | None
) -> None:
    fill(data_url, IDS)
    source = SqlAlchemySource(model=Origin, database="data", batch_size=500,
                              cursor_column=cursor_column)
    everything = [m["id"] for m in source.each()]

    parts = source.split(4)

    pieces = read(parts)
    assert len(pieces) == 4
    assert [i for piece in pieces for i in piece] == everything  # once each, in key order
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1  # even, despite the skew
    assert parts[0].cursor is None
    assert [p.cursor for p in parts[1:]] == [p.source.config.until for p in parts[:-1]]
    assert parts[-1].source.config.until is None  # open-ended: reads rows added later


def test_a_split_after_a_cursor_covers_only_what_is_left(data_url: str) -> None:
    fill(data_url, IDS)
    source = SqlAlchemySource(model=Origin, database="data")
    rows = list(source.each())
    cursor = rows[1999].position

    pieces = read(source.split(3, cursor))

    assert [i for piece in pieces for i in piece] == [m["id"] for m in rows[2000:]]
    assert source.split(3, rows[-1].position)[0].source.config.until is None  # nothing left
    limited = SqlAlchemySource(model=Origin, database="data", limit=10)
    assert len(limited.split(4)) == 1  # a limited read is not split


def test_a_partitioned_sql_flow_copies_postgresql_to_postgresql_on_two_workers(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str
) -> None:
    fill(data_url, IDS)
    spec = flow_spec("sql_copy", broker, rows=0, batch_size=400, partitions=4)
    spec["source"] = {"type": "sqlalchemy",
                      "config": {"model": "Origin", "database": "data", "batch_size": 400,
                                 "select": ["id", "v"]}}
    store.create_flow(spec)
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    run = store.trigger("sql_copy")
    beat(store)

    ended = wait_run(store, run.id)

    assert ended.status == "succeeded", ended.error
    parts = store.list_partitions(run.id)
    assert len(parts) == 4
    assert {p.status for p in parts} == {"succeeded"}
    assert target_ids(data_url) == sorted(IDS)
    assert store.get_flow("sql_copy").cursor in (IDS[-1], [IDS[-1]])
    fill(data_url, [2_000_000])  # the next run copies only what came since
    again = store.trigger("sql_copy")
    beat(store)
    assert wait_run(store, again.id).read == 1
