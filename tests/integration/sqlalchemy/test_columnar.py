"""The columnar path (transform_batch over Arrow tables) on SQLite, PostgreSQL and MariaDB:
Arrow pages in, COPY / executemany from columns out, cursors, exactly-once, rejections."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from active_data_flow import DataFlow, FlowRunError
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.connectors.sqlalchemy import SqlAlchemySink, SqlAlchemySource
from active_data_flow.runtimes.inline import Inline
from tests.integration.sqlalchemy.conftest import insert, rows, url_of
from tests.integration.sqlalchemy.models import Contact, Person
from tests.integration.sqlalchemy.test_flows import SavedCursor
from tests.integration.sqlalchemy.test_source import T0, people


def upper_names(batch: pa.Table) -> pa.Table:
    """The columnar copy of people into contacts: names upper-cased, score kept."""
    return pa.table({
        "id": batch.column("id"), "email": batch.column("email"),
        "name": pc.utf8_upper(batch.column("name")), "score": batch.column("score"),
        "updated_at": batch.column("updated_at"),
    })


def batch_flow(source: Any, sink: Any, transform_batch: Any = upper_names,
               batch_size: int = 7, **attrs: Any) -> type[DataFlow]:
    return type("CopyPeopleColumnar", (DataFlow,), {
        "source": source, "sink": sink, "runtime": Inline(batch_size=batch_size),
        "transform_batch": lambda self, batch: transform_batch(batch), **attrs,
    })


def test_a_columnar_flow_copies_a_table_and_a_second_run_copies_only_new_rows(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(30))
    url = url_of(engine)
    flow = batch_flow(SqlAlchemySource(model=Person, database=url),
                      SqlAlchemySink(model=Contact, database=url))
    first = flow().run()
    assert (first.read, first.written, first.batches, first.cursor) == (30, 30, 5, 30)
    got = rows(engine, Contact, "id", "email", "name", "score", "updated_at", "source")
    assert got[0] == (1, "p1@example.com", "P1", Decimal("0.25"), T0, "import")
    assert got[9][2] is None  # NULL stays NULL (not an empty string)
    assert [r[0] for r in got] == list(range(1, 31))
    insert(engine, Person, people(5, start=31))
    second = flow().run(cursor=first.cursor)
    assert (second.read, second.written, second.cursor) == (5, 5, 35)
    assert len(rows(engine, Contact)) == 35


def test_columnar_upserts_update_existing_rows_and_keep_the_last_of_duplicate_keys(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(10))
    insert(engine, Contact, [{"id": i, "email": f"p{i}@example.com", "name": "old"}
                             for i in (2, 4, 6)])
    url = url_of(engine)

    def doubled(batch: pa.Table) -> pa.Table:  # every row twice; the second one wins
        table = upper_names(batch)
        second = table.set_column(2, "name", pc.binary_join_element_wise(
            pc.fill_null(table.column("name"), "N"), pa.scalar("!"), ""))
        return pa.concat_tables([table, second])

    flow = batch_flow(SqlAlchemySource(model=Person, database=url),
                      SqlAlchemySink(model=Contact, database=url, upsert=True), doubled)
    result = flow().run()
    assert result.read == 10
    names = dict(rows(engine, Contact, "id", "name"))
    assert names == {i: ("N!" if i == 10 else f"P{i}!") for i in range(1, 11)}


def test_the_cursor_commits_with_its_columnar_batch_exactly_once(engine: sa.Engine) -> None:
    insert(engine, Person, people(40))
    url = url_of(engine)
    checkpoint = SavedCursor(engine)
    calls = {"n": 0}

    def crash_on_third(batch: pa.Table) -> pa.Table:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return batch.select(["id", "email"])

    flow = batch_flow(SqlAlchemySource(model=Person, database=url),
                      SqlAlchemySink(model=Contact, database=url), crash_on_third,
                      batch_size=10)
    with pytest.raises(FlowRunError, match="worker died"):
        flow().run(checkpoint=checkpoint)
    assert checkpoint.load() == 20
    assert len(rows(engine, Contact)) == 20
    result = flow().run(cursor=checkpoint.load(), checkpoint=checkpoint)
    assert result.read == 20
    assert [r[0] for r in rows(engine, Contact, "id")] == list(range(1, 41))
    assert checkpoint.outside == 0  # every cursor saved inside its batch's transaction


def test_a_composite_cursor_with_lag_rereads_its_window_on_the_columnar_path(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(10, tie=2))
    url = url_of(engine)
    source = SqlAlchemySource(model=Person, database=url, cursor_column="updated_at",
                              lag=dt.timedelta(seconds=90))
    flow = batch_flow(source, SqlAlchemySink(model=Contact, database=url, upsert=True),
                      batch_size=4)
    first = flow().run()
    assert first.cursor == ["2024-03-01T12:04:00", 10]
    with engine.begin() as conn:  # a row committed late, inside the lag window
        late = people(1, start=11)[0] | {"updated_at": T0 + dt.timedelta(minutes=3)}
        conn.execute(sa.insert(Person), [late])
    again = flow().run(cursor=first.cursor)
    assert again.read == 5  # the window [12:02:30, cursor]: rows 7-10 and the late 11
    assert again.cursor == first.cursor  # window rows keep the cursor: it never goes back
    assert [r[0] for r in rows(engine, Contact, "id")] == list(range(1, 12))


def test_a_row_the_database_refuses_is_isolated_and_dead_lettered(engine: sa.Engine) -> None:
    insert(engine, Person, people(12))
    insert(engine, Contact, [{"id": 100, "email": "p5@example.com", "name": "taken"}])
    url = url_of(engine)
    dead = MemorySink()
    flow = batch_flow(SqlAlchemySource(model=Person, database=url),
                      SqlAlchemySink(model=Contact, database=url),
                      on_error="dead_letter", dead_letter_sink=dead)
    result = flow().run()
    assert (result.read, result.written, result.failed) == (12, 11, 1)
    assert [r[0] for r in rows(engine, Contact, "id")] == [*range(1, 5), *range(6, 13), 100]
    [letter] = dead.records
    assert letter["message"]["email"] == "p5@example.com"


def test_failing_rows_of_a_batch_transform_are_named_by_position(engine: sa.Engine) -> None:
    insert(engine, Person, people(12))
    url = url_of(engine)

    def no_fives(batch: pa.Table) -> pa.Table:
        if pc.any(pc.equal(pc.modulo(batch.column("id"), 5), 0)).as_py():
            raise ValueError("a multiple of five")
        return upper_names(batch)

    failing = batch_flow(SqlAlchemySource(model=Person, database=url),
                         SqlAlchemySink(model=Contact, database=url), no_fives)
    with pytest.raises(FlowRunError, match=r"failing rows: message 5 at position 5\)") as err:
        failing().run()
    assert err.value.result is not None
    assert err.value.result.cursor is None
    dead = MemorySink()
    skipping = batch_flow(SqlAlchemySource(model=Person, database=url),
                          SqlAlchemySink(model=Contact, database=url, upsert=True), no_fives,
                          on_error="dead_letter", dead_letter_sink=dead)
    result = skipping().run()
    assert (result.read, result.failed) == (12, 2)
    assert [d["position"] for d in dead.records] == [5, 10]
    assert [r[0] for r in rows(engine, Contact, "id")] == [
        i for i in range(1, 13) if i % 5]


def test_awkward_text_and_nulls_survive_the_columnar_sink(engine: sa.Engine) -> None:
    from active_data_flow.connectors.memory import MemorySource

    names = ["", None, 'quote " and, comma', "new\nline", "back\\slash", "tab\there", "é ü"]
    # Microseconds on SQLite and PostgreSQL (MariaDB's DATETIME keeps whole seconds).
    fraction = 0 if engine.dialect.name == "mysql" else 7
    stamps = [T0 + dt.timedelta(days=i, microseconds=i * fraction) for i in range(len(names))]
    records = [{"id": i, "email": f"e{i}@x.org", "name": n, "updated_at": t}
               for i, (n, t) in enumerate(zip(names, stamps, strict=True))]
    flow = batch_flow(MemorySource(records=records),
                      SqlAlchemySink(model=Contact, database=url_of(engine)),
                      lambda batch: batch)
    assert flow().run().written == len(names)
    assert rows(engine, Contact, "name", "updated_at") == list(zip(names, stamps, strict=True))


def test_without_adbc_postgresql_pages_come_from_the_sqlalchemy_driver(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ADBC is optional: without it PostgreSQL pages are read through psycopg."""
    from active_data_flow.connectors.sqlalchemy import source as source_module
    from tests.integration.sqlalchemy.models import Base

    monkeypatch.setattr(source_module, "_adbc", lambda: None)
    eng = sa.create_engine(postgres_url)
    Base.metadata.create_all(eng)
    insert(eng, Person, people(12))
    flow = batch_flow(SqlAlchemySource(model=Person, database=postgres_url),
                      SqlAlchemySink(model=Contact, database=postgres_url))
    assert flow().run().cursor == 12
    got = rows(eng, Contact, "id", "name", "score", "updated_at")
    assert got[0] == (1, "P1", Decimal("0.25"), T0)
    assert len(got) == 12
    eng.dispose()


def test_partitions_of_a_split_source_read_disjoint_arrow_batches(engine: sa.Engine) -> None:
    """What Celery's partitioned runs rely on: each part's batches cover its own range."""
    insert(engine, Person, people(25))
    source = SqlAlchemySource(model=Person, database=url_of(engine))
    parts = source.split(3)
    assert len(parts) == 3
    seen: list[int] = []
    for part in parts:
        for batch in part.source.read_batches(part.cursor, 4):
            seen.extend(batch.table.column("id").to_pylist())
            assert batch.position == batch.table.column("id")[-1].as_py()
    assert seen == list(range(1, 26))


def test_a_read_adbc_cannot_connect_for_goes_on_through_the_engine(
    postgres_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """An engine whose connections come from a creator (options ADBC cannot see)."""
    import psycopg

    from tests.integration.sqlalchemy.models import Base

    real = sa.make_url(postgres_url).set(drivername="postgresql")
    engine = sa.create_engine(
        "postgresql+psycopg://postgres@adbc-cannot-resolve.invalid/nothing",
        creator=lambda: psycopg.connect(real.render_as_string(hide_password=False)))
    Base.metadata.create_all(engine)
    insert(engine, Person, people(9))
    flow = batch_flow(SqlAlchemySource(model=Person, database=engine),
                      SqlAlchemySink(model=Contact, database=engine))
    assert flow().run().written == 9
    assert len(rows(engine, Contact)) == 9
    assert "through the engine's driver: ADBC cannot connect" in caplog.text
    engine.dispose()
