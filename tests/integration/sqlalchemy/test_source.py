"""SqlAlchemySource on SQLite, PostgreSQL and MariaDB: what it reads, in what order, from where."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from active_data_flow.connectors.sqlalchemy import SqlAlchemySource
from active_data_flow.errors import ConfigurationError, SourceError
from tests.integration.sqlalchemy.conftest import insert, url_of
from tests.integration.sqlalchemy.models import Author, Comment, Person, Post, Reading

T0 = dt.datetime(2024, 3, 1, 12, 0, 0)


def people(count: int, *, tie: int = 1, start: int = 1) -> list[dict[str, Any]]:
    """``count`` people; every ``tie`` consecutive ones share an ``updated_at``."""
    return [
        {"id": i, "email": f"p{i}@example.com", "name": None if i % 10 == 0 else f"P{i}",
         "score": Decimal(i) / 4, "updated_at": T0 + dt.timedelta(minutes=(i - start) // tie)}
        for i in range(start, start + count)
    ]


def ids(messages: Iterator[Any]) -> list[int]:
    return [m["id"] for m in messages]


def test_reads_every_row_in_key_order_with_typed_values_and_json_positions(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(25))
    source = SqlAlchemySource(model=Person, database=url_of(engine), batch_size=7)
    messages = list(source.each())
    assert ids(iter(messages)) == list(range(1, 26))
    first = messages[0]
    assert first.to_dict() == people(1)[0]
    assert isinstance(first["score"], Decimal)
    assert isinstance(first["updated_at"], dt.datetime)
    assert [m.position for m in messages[:3]] == [1, 2, 3]
    # Positions survive JSON (a store keeps them as JSON) and resume strictly after.
    cursor = json.loads(json.dumps(messages[11].position))
    assert ids(source.each(cursor)) == list(range(13, 26))
    assert list(source.each(messages[-1].position)) == []
    assert source.count() == 25


def test_where_select_order_by_and_limit(engine: sa.Engine) -> None:
    insert(engine, Person, people(30))
    url = url_of(engine)

    def read(**options: Any) -> list[dict[str, Any]]:
        return [m.to_dict() for m in SqlAlchemySource(model=Person, database=url,
                                                      batch_size=4, **options).each()]

    assert [r["id"] for r in read(where={"id": [3, 5, 8], "name": ["P3", "P8"]})] == [3, 8]
    assert [r["id"] for r in read(where={"name": None})] == [10, 20, 30]
    assert [r["id"] for r in read(where={"id": []})] == []
    assert [r["id"] for r in read(where={"updated_at": "2024-03-01T12:04:00"})] == [5]
    # select: only those columns, plus the key (positions need it).
    assert read(select=["email"], limit=2) == [
        {"email": "p1@example.com", "id": 1}, {"email": "p2@example.com", "id": 2}
    ]
    # Descending order pages correctly; limit caps the read across pages.
    descending = SqlAlchemySource(model=Person, database=url, order_by="-id", batch_size=4,
                                  limit=9)
    messages = list(descending.each())
    assert ids(iter(messages)) == list(range(30, 21, -1))
    assert ids(descending.each(messages[4].position)) == list(range(25, 16, -1))
    assert [r["id"] for r in read(order_by=["email desc"], limit=3)] == [9, 8, 7]
    assert SqlAlchemySource(model=Person, database=url, where={"name": None}).count() == 3


def test_ties_on_a_non_unique_cursor_column_are_never_skipped(engine: sa.Engine) -> None:
    # Five rows share each updated_at; pages of 3 cut through every group of ties.
    rows = people(30, tie=5)
    insert(engine, Person, list(reversed(rows)))
    source = SqlAlchemySource(model=Person, database=url_of(engine), batch_size=3,
                              cursor_column="updated_at")
    messages = list(source.each())
    assert ids(iter(messages)) == list(range(1, 31))
    # The key was completed with the primary key: positions are (updated_at, id).
    assert messages[6].position == ["2024-03-01T12:01:00", 7]
    # Resuming inside a group of ties reads the rest of the group, then the others.
    assert ids(source.each(messages[6].position)) == list(range(8, 31))
    # The composite form names both columns; the tuple comparison gives the same reads.
    both = SqlAlchemySource(model=Person, database=url_of(engine), batch_size=4,
                            cursor_column=["updated_at", "id"])
    assert [m.position for m in both.each()] == [m.position for m in messages]


def test_updated_rows_are_read_again_and_lag_rereads_only_its_window(engine: sa.Engine) -> None:
    insert(engine, Person, people(10))  # updated_at 12:00 .. 12:09
    url = url_of(engine)
    source = SqlAlchemySource(model=Person, database=url, cursor_column="updated_at",
                              batch_size=3, lag=dt.timedelta(seconds=90))
    cursor = list(source.each())[-1].position
    assert cursor == ["2024-03-01T12:09:00", 10]
    with engine.begin() as conn:
        # Row 4 is edited: its new updated_at lies after the cursor.
        conn.execute(sa.update(Person).where(Person.id == 4)
                     .values(updated_at=T0 + dt.timedelta(minutes=20), name="edited"))
        # Row 11 commits late with an earlier time (inside the lag window) ...
        insert_late = people(1, start=11)[0] | {"updated_at": T0 + dt.timedelta(minutes=8)}
        # ... and row 12 much earlier (outside it): no bounded window can catch it.
        too_late = people(1, start=12)[0] | {"updated_at": T0 + dt.timedelta(minutes=1)}
        conn.execute(sa.insert(Person), [insert_late, too_late])
    again = list(source.each(cursor))
    # The window [12:07:30, cursor] is re-read (rows 9, 11, 10 in key order), then what is new.
    assert ids(iter(again)) == [9, 11, 10, 4]
    # Window rows keep the incoming cursor as their position: a cursor never goes back.
    assert [m.position for m in again] == [cursor, cursor, cursor,
                                           ["2024-03-01T12:20:00", 4]]
    assert again[-1]["name"] == "edited"
    # Without lag the resume reads only what lies after the cursor.
    plain = SqlAlchemySource(model=Person, database=url, cursor_column="updated_at")
    assert ids(plain.each(cursor)) == [4]
    # A numeric lag on a numeric cursor: re-read ids within 2 of the cursor.
    numeric = SqlAlchemySource(model=Person, database=url, lag=2)
    assert ids(numeric.each(10)) == [8, 9, 10, 11, 12]
    assert ids(numeric.each([10])) == [8, 9, 10, 11, 12]  # a one-item list works too


def test_composite_primary_keys_and_renamed_columns(engine: sa.Engine) -> None:
    readings = [{"sensor": s, "taken_at": T0 + dt.timedelta(seconds=i), "celsius": i / 2}
                for s in ("b", "a") for i in range(4)]
    insert(engine, Reading, readings)
    source = SqlAlchemySource(model=Reading, database=url_of(engine), batch_size=3)
    messages = list(source.each())
    assert [(m["sensor"], m["celsius"]) for m in messages] == [
        ("a", 0.0), ("a", 0.5), ("a", 1.0), ("a", 1.5),
        ("b", 0.0), ("b", 0.5), ("b", 1.0), ("b", 1.5),
    ]
    assert messages[2].position == ["a", "2024-03-01T12:00:02"]
    resumed = source.each(json.loads(json.dumps(messages[2].position)))
    assert [(m["sensor"], m["taken_at"].second) for m in resumed] == [
        ("a", 3), ("b", 0), ("b", 1), ("b", 2), ("b", 3),
    ]


def test_includes_eager_loads_relationships_without_n_plus_one_queries(
    engine: sa.Engine,
) -> None:
    insert(engine, Author, [{"id": a, "name": f"A{a}"} for a in range(1, 26)])
    insert(engine, Post, [{"id": a * 10 + p, "author_id": a, "title": f"T{a}.{p}"}
                          for a in range(1, 26) for p in range(3)])
    insert(engine, Comment, [{"id": i, "post_id": 10 + i % 3, "body": f"c{i}"}
                             for i in range(1, 5)])
    selects: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, stmt, *args: selects.append(stmt)
                 if stmt.lstrip().upper().startswith("SELECT") else None)
    source = SqlAlchemySource(model=Author, database=engine, batch_size=10,
                              includes=["posts", "posts.comments"])
    messages = list(source.each())
    table_reads = [s for s in selects if "FROM" in s.upper()]
    # Three pages (10, 10, 5 authors), each: authors, their posts, those posts' comments.
    assert len(table_reads) == 3 * 3
    assert len(messages) == 25
    first = messages[0]
    assert first["name"] == "A1"
    assert [p["title"] for p in first["posts"]] == ["T1.0", "T1.1", "T1.2"]
    assert [c["body"] for c in first["posts"][0]["comments"]] == ["c3"]
    assert [c["body"] for c in first["posts"][1]["comments"]] == ["c1", "c4"]
    assert messages[4].position == 5
    # Many-to-one relationships nest as one dict.
    post = next(iter(SqlAlchemySource(model=Post, database=engine, includes="author").each()))
    assert post["author"] == {"id": 1, "name": "A1"}


def test_readonly_reads_in_read_only_transactions_and_resets_the_session(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(5))
    probe = {
        "postgresql": "SHOW transaction_read_only",
        "mysql": "SELECT @@session.tx_read_only",
        "sqlite": "PRAGMA query_only",
    }[engine.dialect.name]
    seen: list[str] = []

    def during_read(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "people" in statement:
            check = cursor.connection.cursor()
            check.execute(probe)
            seen.append(str(check.fetchone()[0]).lower())

    event.listen(engine, "before_cursor_execute", during_read)
    assert len(list(SqlAlchemySource(model=Person, database=engine).each())) == 5
    assert len(list(SqlAlchemySource(model=Person, database=engine, readonly=False).each())) == 5
    assert seen == [seen[0], "off" if seen[0] == "on" else "0"]
    assert seen[0] in ("on", "1")
    # Connections went back to the pool writable.
    with engine.begin() as conn:
        conn.execute(sa.update(Person).values(name="written"))


def test_close_returns_the_connection_mid_read(engine: sa.Engine) -> None:
    insert(engine, Person, people(10))
    source = SqlAlchemySource(model=Person, database=engine, batch_size=3)
    stream = source.each()
    assert next(stream)["id"] == 1
    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    source.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with pytest.raises(StopIteration):
        next(stream)


def test_a_failing_query_is_a_source_error_naming_the_database(engine: sa.Engine) -> None:
    Person.__table__.drop(engine)  # type: ignore[attr-defined]
    source = SqlAlchemySource(model=Person, database=engine)
    with pytest.raises(SourceError, match=r"source \(database .*\): reading Person rows failed"):
        list(source.each())
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_cursor_of_another_shape_is_refused_at_once(engine: sa.Engine) -> None:
    source = SqlAlchemySource(model=Person, database=engine, cursor_column="updated_at")
    for bad in (5, [5], {"line": 3}, ["yesterday", 1], [True, 1]):
        with pytest.raises(ConfigurationError) as err:
            source.each(bad)
        assert err.value.option == "cursor"
