"""DataFlows that read one table and write another, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow import DataFlow, FlowRunError, Message
from active_data_flow.connectors.sqlalchemy import (
    SqlAlchemySink,
    SqlAlchemySource,
    register_database,
    register_models,
)
from active_data_flow.registry import untrusted_specs
from active_data_flow.runner import Checkpoint
from active_data_flow.runtimes.inline import Inline
from tests.integration.sqlalchemy.conftest import insert, rows, url_of
from tests.integration.sqlalchemy.models import Base, Contact, Person
from tests.integration.sqlalchemy.test_source import people


def copy_flow(source: Any, sink: Any, batch_size: int = 7, **attrs: Any) -> type[DataFlow]:
    """A flow class copying people into contacts, upper-casing names."""

    def transform(self: DataFlow, message: Message) -> dict[str, Any]:
        return {"id": message["id"], "email": message["email"],
                "name": (message["name"] or "").upper(), "updated_at": message["updated_at"]}

    return type("CopyPeople", (DataFlow,), {
        "source": source, "sink": sink, "runtime": Inline(batch_size=batch_size),
        "transform": transform, **attrs,
    })


def test_a_flow_copies_a_table_and_a_second_run_copies_only_the_new_rows(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(30))
    url = url_of(engine)
    flow = copy_flow(SqlAlchemySource(model=Person, database=url, batch_size=4),
                     SqlAlchemySink(model=Contact, database=url))
    first = flow().run()
    assert (first.read, first.written, first.batches) == (30, 30, 5)
    assert first.cursor == 30
    assert rows(engine, Contact, "id", "name")[:2] == [(1, "P1"), (2, "P2")]
    insert(engine, Person, people(5, start=31))
    second = flow().run(cursor=json.loads(json.dumps(first.cursor)))
    assert (second.read, second.written, second.cursor) == (5, 5, 35)
    assert [r[0] for r in rows(engine, Contact, "id")] == list(range(1, 36))
    assert flow().run(cursor=second.cursor).read == 0


def test_a_flow_from_stored_specs_runs_with_registered_names_only(engine: sa.Engine) -> None:
    insert(engine, Person, people(12))
    register_database("app", url_of(engine))
    register_models(Base)
    code_flow = copy_flow(
        SqlAlchemySource(model=Person, database="app", cursor_column="updated_at"),
        SqlAlchemySink(model=Contact, database="app", upsert=True),
    )
    spec = code_flow.flow_spec().to_dict()
    assert spec["source"]["config"] == {
        "model": "tests.integration.sqlalchemy.models:Person", "database": "app",
        "cursor_column": ["updated_at"],
    }
    with untrusted_specs():
        stored = copy_flow(spec["source"], spec["sinks"][0], batch_size=5)
        result = stored().run()
        assert result.written == 12
        assert result.cursor == ["2024-03-01T12:11:00", 12]
        assert stored().run(cursor=result.cursor).read == 0


class SavedCursor(Checkpoint):
    """Keeps the cursor in a table of the sink's own database, in the batch's transaction."""

    table = sa.Table("flow_cursors", sa.MetaData(),
                     sa.Column("flow", sa.String(40), primary_key=True),
                     sa.Column("cursor", sa.String(200)))

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.table.create(engine, checkfirst=True)
        self.outside = 0

    def load(self) -> Any:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(self.table.c.cursor)).scalar()
        return None if value is None else json.loads(value)

    def within(self, handle: sa.Connection, cursor: Any) -> bool:
        handle.execute(sa.delete(self.table))
        handle.execute(sa.insert(self.table), {"flow": "copy", "cursor": json.dumps(cursor)})
        return True

    def __call__(self, cursor: Any) -> None:
        self.outside += 1


def test_the_cursor_commits_with_its_batch_so_a_crashed_run_resumes_exactly_once(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(40))
    url = url_of(engine)
    checkpoint = SavedCursor(engine)
    seen = {"count": 0}

    class Crash(Exception):
        pass

    def transform(self: DataFlow, message: Message) -> dict[str, Any]:
        seen["count"] += 1
        if seen["count"] == 23:  # mid-way through the third batch of ten
            raise Crash("worker died")
        return {"id": message["id"], "email": message["email"]}

    flow = type("Copy", (DataFlow,), {
        "source": SqlAlchemySource(model=Person, database=url),
        "sink": SqlAlchemySink(model=Contact, database=url),  # plain inserts, no upsert
        "runtime": Inline(batch_size=10), "transform": transform,
    })
    with pytest.raises(FlowRunError) as err:
        flow().run(checkpoint=checkpoint)
    assert err.value.result is not None
    assert err.value.result.cursor == 20
    assert checkpoint.load() == 20
    assert len(rows(engine, Contact)) == 20
    result = flow().run(cursor=checkpoint.load(), checkpoint=checkpoint)
    assert result.read == 20
    assert [r[0] for r in rows(engine, Contact, "id")] == list(range(1, 41))
    assert checkpoint.load() == 40
    assert checkpoint.outside == 0  # every cursor was saved inside a batch transaction


def test_a_flow_reads_one_database_and_writes_another(
    sqlite_engine: sa.Engine, postgres_url: str
) -> None:
    target = sa.create_engine(postgres_url)
    Base.metadata.create_all(target)
    insert(sqlite_engine, Person, people(15))
    register_database("app", url_of(sqlite_engine))
    register_database("reporting", postgres_url)
    flow = copy_flow(SqlAlchemySource(model=Person, database="app"),
                     SqlAlchemySink(model=Contact, database="reporting"))
    assert flow().run().written == 15
    assert [r[0] for r in rows(target, Contact, "id")] == list(range(1, 16))
    assert rows(sqlite_engine, Contact) == []
    target.dispose()
