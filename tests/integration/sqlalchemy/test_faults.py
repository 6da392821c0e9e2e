"""Faults: refused records, killed connections, unreachable databases. Either the run retries
and completes, or it ends with a clear error; the target never holds a partial transaction."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow import DataFlow, FlowRunError, Message
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.connectors.sqlalchemy import (
    SqlAlchemySink,
    SqlAlchemySource,
    register_database,
)
from active_data_flow.errors import ConnectorTimeout, RecordRejected, is_transient
from active_data_flow.runtimes.inline import Inline
from tests.integration.sqlalchemy.conftest import insert, rows, url_of
from tests.integration.sqlalchemy.models import Contact, Person
from tests.integration.sqlalchemy.test_flows import SavedCursor, copy_flow
from tests.integration.sqlalchemy.test_source import people

SERVERS = ("postgresql", "mariadb")


def session_id(conn: sa.Connection) -> int:
    sql = "SELECT pg_backend_pid()" if conn.dialect.name == "postgresql" else \
        "SELECT CONNECTION_ID()"
    return int(conn.exec_driver_sql(sql).scalar_one())


def kill(engine: sa.Engine, *sessions: int) -> None:
    """Kill database sessions from another connection, as an operator or a failover would."""
    with engine.connect() as admin:
        for pid in sessions:
            if engine.dialect.name == "postgresql":
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            else:
                admin.exec_driver_sql(f"KILL CONNECTION {pid}")
        admin.commit()


def kill_all_but(engine: sa.Engine, keep: int | None = None) -> int:
    """Kill every other session on this test's database; return how many were killed."""
    with engine.connect() as admin:
        if engine.dialect.name == "postgresql":
            pids = admin.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()").scalars().all()
        else:
            pids = admin.exec_driver_sql(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                "AND id <> CONNECTION_ID()").scalars().all()
    pids = [p for p in pids if p != keep]
    kill(engine, *pids)
    return len(pids)


def test_a_unique_violation_mid_run_fails_it_naming_the_record_with_nothing_partial(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(30))
    insert(engine, Contact, [{"id": 1000, "email": "p15@example.com"}])  # will collide
    url = url_of(engine)
    flow = copy_flow(SqlAlchemySource(model=Person, database=url),
                     SqlAlchemySink(model=Contact, database=url), batch_size=10)
    with pytest.raises(FlowRunError) as err:
        flow().run()
    cause = err.value.__cause__
    assert isinstance(cause, RecordRejected)
    assert cause.key == 15
    assert not err.value.transient
    assert err.value.result is not None
    assert err.value.result.cursor == 10
    # The first batch is committed; of the second, nothing.
    assert [r[0] for r in rows(engine, Contact, "id")] == [*range(1, 11), 1000]
    # With on_error="skip" the run goes on without the refused record.
    skipping = copy_flow(SqlAlchemySource(model=Person, database=url),
                         SqlAlchemySink(model=Contact, database=url),
                         batch_size=10, on_error="skip")
    result = skipping().run(cursor=err.value.result.cursor)
    assert (result.read, result.written, result.failed) == (20, 19, 1)
    assert len(rows(engine, Contact)) == 30


def test_a_validator_rejecting_a_row_dead_letters_it_and_keeps_the_rest(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(12))
    url = url_of(engine)
    dead = MemorySink()

    class Normalise(DataFlow):
        source = SqlAlchemySource(model=Person, database=url)
        sink = SqlAlchemySink(model=Contact, database=url, batch_size=1)
        runtime = Inline(batch_size=5)
        on_error = "dead_letter"
        dead_letter_sink = dead

        def transform(self, message: Message) -> dict[str, Any]:
            email = "broken" if message["id"] == 7 else message["email"].upper()
            return {"id": message["id"], "email": email}

    result = Normalise().run()
    assert (result.read, result.written, result.failed) == (12, 11, 1)
    assert [r["message"]["id"] for r in dead.records] == [7]
    assert "invalid email 'broken'" in dead.records[0]["error"]
    assert len(rows(engine, Contact)) == 11
    assert rows(engine, Contact, "email")[0] == ("p1@example.com",)  # the validator lowered it


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_a_connection_killed_inside_the_batch_transaction_is_retried_once_and_written_once(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(50))
    url = url_of(engine)
    kills: list[Any] = []

    class KilledOnce(SavedCursor):
        def within(self, handle: sa.Connection, cursor: Any) -> bool:
            if cursor == 20 and not kills:
                # The batch's rows are written but not committed when the session dies.
                kills.append(cursor)
                kill(self.engine, session_id(handle))
            return super().within(handle, cursor)

    checkpoint = KilledOnce(engine)
    flow = copy_flow(SqlAlchemySource(model=Person, database=url),
                     SqlAlchemySink(model=Contact, database=url), batch_size=10)
    result = flow().run(checkpoint=checkpoint)
    assert kills == [20]
    assert result.written == 50
    assert [r[0] for r in rows(engine, Contact, "id")] == list(range(1, 51))  # no duplicate
    assert checkpoint.load() == 50


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_sessions_killed_between_pages_and_batches_reconnect_transparently(
    engine: sa.Engine,
) -> None:
    insert(engine, Person, people(60))
    url = url_of(engine)
    killed: list[int] = []

    def transform(self: DataFlow, message: Message) -> dict[str, Any]:
        if message["id"] in (15, 38):  # the source and the sink both hold a session then
            killed.append(kill_all_but(engine))
        return {"id": message["id"], "email": message["email"]}

    flow = type("Copy", (DataFlow,), {
        "source": SqlAlchemySource(model=Person, database=url, batch_size=8),
        "sink": SqlAlchemySink(model=Contact, database=url),
        "runtime": Inline(batch_size=10), "transform": transform,
    })
    assert flow().run().written == 60
    assert all(n >= 2 for n in killed)
    assert [r[0] for r in rows(engine, Contact, "id")] == list(range(1, 61))


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_a_database_that_keeps_failing_ends_the_run_clearly_with_nothing_partial(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture,
) -> None:
    insert(engine, Person, people(30))
    register_database("target", url_of(engine), retries=3, backoff=0.01)

    class AlwaysKilled(SavedCursor):
        def within(self, handle: sa.Connection, cursor: Any) -> bool:
            if cursor == 20:
                kill(self.engine, session_id(handle))
            return super().within(handle, cursor)

    checkpoint = AlwaysKilled(engine)
    flow = copy_flow(SqlAlchemySource(model=Person, database="target"),
                     SqlAlchemySink(model=Contact, database="target"), batch_size=10)
    with caplog.at_level(logging.WARNING), pytest.raises(FlowRunError) as err:
        flow().run(checkpoint=checkpoint)
    cause = err.value.__cause__
    assert isinstance(cause, ConnectorTimeout)
    assert "database 'target'" in str(cause)
    assert "after 3 attempts" in str(cause)
    assert err.value.transient  # a runtime may retry the run later
    assert err.value.result is not None
    assert err.value.result.cursor == 10
    assert [r[0] for r in rows(engine, Contact, "id")] == list(range(1, 11))
    assert checkpoint.load() == 10
    retries = [r for r in caplog.records if getattr(r, "action", "") == "db_retry"]
    assert len(retries) == 2


def test_an_unreachable_database_is_a_transient_error_naming_it_with_the_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_database("reporting", "postgresql+psycopg://app:s3cr3t@127.0.0.1:1/reports",
                      retries=2, backoff=0.01)
    source = SqlAlchemySource(model=Person, database="reporting")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorTimeout) as err:
        next(iter(source.each()))
    message = str(err.value)
    assert message.startswith("source: cannot connect to database 'reporting' "
                              "(postgresql+psycopg://app:***@127.0.0.1:1/reports) after 2 "
                              "attempt(s)")
    assert is_transient(err.value)
    assert "s3cr3t" not in message
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)
    sink = SqlAlchemySink(model=Contact, database="reporting")
    sink.write({"id": 1, "email": "a@b.c"})
    with pytest.raises(ConnectorTimeout, match="sink: cannot connect to database 'reporting'"):
        sink.flush()


def test_an_exhausted_pool_is_a_connector_timeout(sqlite_engine: sa.Engine) -> None:
    register_database("tiny", url_of(sqlite_engine), retries=1, pool_size=1, max_overflow=0,
                      pool_timeout=0.1)
    source = SqlAlchemySource(model=Person, database="tiny")
    insert(sqlite_engine, Person, people(3))
    stream = source.each()
    next(stream)  # holds the pool's only connection
    sink = SqlAlchemySink(model=Contact, database="tiny")
    sink.write({"id": 1, "email": "a@b.c"})
    with pytest.raises(ConnectorTimeout, match="database 'tiny'"):
        sink.flush()
    source.close()
    sink.flush()  # the connection is back: the same records go through
    sink.close()
    assert rows(sqlite_engine, Contact, "id") == [(1,)]
