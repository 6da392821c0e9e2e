"""The one database layer (connectors/sqlalchemy/_db.py), on real SQLite, PostgreSQL, MariaDB.

Engines and their cache, SQLite's transactions, retries of connections and of whole
transactions, the transient-error rule, URLs, and masking in every message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from active_data_flow.connectors.sqlalchemy import _db
from active_data_flow.connectors.sqlalchemy._db import (
    Database,
    DatabaseUnavailable,
    RetryPolicy,
    begin_immediate,
    engine_for,
    is_transient_db_error,
    register_database,
)
from active_data_flow.errors import (
    ConfigurationError,
    ConnectorTimeout,
    RecordRejected,
    SinkError,
    SourceError,
    is_transient,
)

PASSWORD = "s3cr3t-Pw"
UNREACHABLE = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/reports"


class Gone(Exception):
    """An unavailable_error of the caller's own (as the flow store passes StoreUnavailable)."""


class Unmigrated(Exception):
    """A schema_error of the caller's own (as the flow store passes StoreNotMigrated)."""


def pragma(conn: sa.Connection, name: str) -> Any:
    return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def session_id(conn: sa.Connection) -> int:
    sql = "SELECT pg_backend_pid()" if conn.dialect.name == "postgresql" else \
        "SELECT CONNECTION_ID()"
    return int(conn.exec_driver_sql(sql).scalar_one())


def kill(url: str, session: int) -> None:
    """Kill a database session from another connection, as an operator or a failover would."""
    engine = sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as admin:
            if engine.dialect.name == "postgresql":
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({session})")
            else:
                admin.exec_driver_sql(f"KILL CONNECTION {session}")
    finally:
        engine.dispose()


def run_threads(*targets: Callable[[], None], timeout: float = 20.0) -> list[BaseException]:
    """Run each target in a thread; return what they raised. Fails if one hangs."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread hung"
    return errors


@pytest.fixture
def server_url(request: pytest.FixtureRequest, make_database: Any) -> str:
    """A fresh PostgreSQL or MariaDB database (parametrised indirectly)."""
    return make_database(request.param)  # type: ignore[no-any-return]


SERVERS = pytest.mark.parametrize("server_url", ["postgresql", "mariadb"], indirect=True)


# -- the engine cache ------------------------------------------------------------------------
def test_one_engine_per_url_and_profile(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    connector = engine_for(url)
    assert engine_for(url) is connector
    assert engine_for(sa.make_url(url)) is connector  # a URL object is the same key
    assert _db.resolve_database(url, None, "source") is connector  # connectors share it
    store = engine_for(url, profile="store")
    assert store is not connector
    assert store.engine is not connector.engine
    assert engine_for(url, profile="store") is store
    assert connector.owned
    assert store.owned
    other = engine_for(f"sqlite:///{tmp_path / 'b.db'}")
    assert other.engine is not connector.engine
    assert _db.cached_database(url) is connector
    _db.dispose_engines()
    assert _db.cached_database(url) is None  # forgotten: the next use makes a fresh engine


def test_a_registered_url_shares_the_cached_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    cached = engine_for(url)
    engine = register_database("main", url, retries=5)
    assert engine is cached.engine
    named = _db.resolve_database("main", None, "sink")
    assert (named.name, named.retry.attempts, named.owned) == ("main", 5, True)
    assert _db.resolve_database(engine, None, "sink") is named  # the engine, by its name
    assert _db.registered_name(engine) == "main"
    assert _db.registered_name_of_url(url) == "main"
    _db.dispose_engines()  # a registered database keeps its place in the cache
    assert _db.cached_database(url) is cached


def test_other_engine_options_replace_an_unregistered_engine_but_not_a_registered_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = engine_for(url)
    with first.engine.connect():
        pass
    tuned = engine_for(url, pool_size=2)
    assert tuned is not first
    assert engine_for(url) is tuned
    assert engine_for(url, pool_size=2) is tuned
    assert first.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    register_database("main", url)
    with pytest.raises(ConfigurationError, match=r"registered database\(s\) 'main' use it"):
        engine_for(url, pool_size=3)
    register_database("main", url, pool_size=3)  # re-registering the name may change them
    assert engine_for(url).engine.pool.size() == 3  # type: ignore[attr-defined]


def test_registering_again_replaces_and_disposes_the_old_engine(tmp_path: Path) -> None:
    first = register_database("main", f"sqlite:///{tmp_path / 'one.db'}")
    with first.connect():
        pass
    second = register_database("main", f"sqlite:///{tmp_path / 'two.db'}")
    assert first is not second
    assert first.pool.checkedin() == 0  # type: ignore[attr-defined]
    assert _db.registered_databases() == ["main"]
    with pytest.raises(ConfigurationError, match="apply only when registering a URL"):
        register_database("x", second, pool_size=3)
    with pytest.raises(ConfigurationError, match="retries must be >= 1"):
        register_database("x", "sqlite://", retries=0)
    _db.unregister_database("main")
    assert _db.registered_databases() == []


def test_engines_passed_in_are_used_as_they_are(tmp_path: Path) -> None:
    passed = sa.create_engine(f"sqlite:///{tmp_path / 'passed.db'}")
    register_database("app", passed)
    db = _db.resolve_database("app", None, "source")
    assert db.engine is passed
    assert not db.owned
    with db.connect("source") as conn:
        assert pragma(conn, "journal_mode") == "delete"
    db.close()
    _db.unregister_database("app")
    _db.dispose_engines()
    with passed.connect() as conn:  # never disposed here: still the application's
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    passed.dispose()


def test_a_forked_child_opens_its_own_connections(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    connector = engine_for(url)
    store = Database(_db.make_engine(url, profile="store"), owned=True)  # not cached
    for db in (connector, store):
        _db.release(db.connect("source"))
        assert db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # the child: the parent's pooled connections must not be reused here
        ok = all(db.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
                 for db in (connector, store))
        with connector.read() as conn:
            ok = ok and conn.exec_driver_sql("SELECT 1").scalar() == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for db in (connector, store):
        assert db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        db.close()
        assert db.engine.pool.checkedin() == 0  # type: ignore[attr-defined]


# -- engine set-up per profile ---------------------------------------------------------------
def test_sqlite_files_get_wal_and_each_profile_its_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    expected = {"connector": (2, 0, 5000), "store": (1, 1, 30000)}  # FULL / NORMAL
    for profile in ("connector", "store"):
        with engine_for(url, profile=profile).read() as conn:
            assert pragma(conn, "journal_mode") == "wal"
            assert (pragma(conn, "synchronous"), pragma(conn, "foreign_keys"),
                    pragma(conn, "busy_timeout")) == expected[profile]
    opted_out = engine_for(f"sqlite:///{tmp_path / 'b.db'}", sqlite_wal=False)
    with opted_out.read() as conn:
        assert pragma(conn, "journal_mode") == "delete"
    timed = engine_for(f"sqlite:///{tmp_path / 'c.db'}", connect_args={"timeout": 1.5})
    with timed.read() as conn:
        assert pragma(conn, "busy_timeout") == 1500


def test_sqlite_connections_may_move_between_threads(tmp_path: Path) -> None:
    db = engine_for(f"sqlite:///{tmp_path / 'a.db'}")
    conn = db.connect("source")
    try:
        assert run_threads(lambda: conn.exec_driver_sql("SELECT 1").close()) == []
    finally:
        _db.release(conn)


def test_in_memory_sqlite_works_for_connectors() -> None:
    db = engine_for("sqlite://")
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with db.read() as conn:  # the same thread sees the same database
        assert conn.exec_driver_sql("SELECT n FROM t").scalar_one() == 1


@SERVERS
def test_server_profiles(server_url: str) -> None:
    store = engine_for(server_url, profile="store").engine
    connector = engine_for(server_url).engine
    with store.connect() as conn:
        assert conn.get_isolation_level() == "READ COMMITTED"
    assert store.pool.size() == 5  # type: ignore[attr-defined]
    assert store.pool._max_overflow == 20  # type: ignore[attr-defined]
    assert store.pool._recycle == 3600
    with connector.connect() as conn:
        assert conn.get_isolation_level() == conn.default_isolation_level


@SERVERS
@pytest.mark.parametrize("profile", ["connector", "store"])
def test_a_pooled_connection_killed_while_idle_is_replaced_transparently(
    server_url: str, profile: _db.Profile,
) -> None:
    db = engine_for(server_url, profile=profile)
    with db.read() as conn:
        first = session_id(conn)
    kill(server_url, first)
    with db.read() as conn:  # pool_pre_ping found the dead one
        assert session_id(conn) != first


# -- SQLite transactions ---------------------------------------------------------------------
def test_sqlite_writers_queue_behind_begin_immediate(tmp_path: Path) -> None:
    db = engine_for(f"sqlite:///{tmp_path / 'a.db'}")
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    first_wrote = threading.Event()
    events: list[str] = []

    def first() -> None:
        with db.write() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            first_wrote.set()
            time.sleep(0.3)  # the second writer arrives meanwhile
            events.append("first commits")

    def second() -> None:
        assert first_wrote.wait(10)
        with db.write() as conn:  # waits for the write lock here, behind the busy timeout
            events.append("second begins")
            seen = conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (seen + 1,))

    assert run_threads(first, second) == []
    assert events == ["first commits", "second begins"]
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT n FROM t ORDER BY n").scalars().all() == [1, 2]


def test_without_begin_immediate_the_second_writer_fails_to_upgrade(tmp_path: Path) -> None:
    """The control for the test above: a deferred transaction that reads, then writes."""
    db = engine_for(f"sqlite:///{tmp_path / 'a.db'}")
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    first_wrote, second_read, first_committed = (threading.Event() for _ in range(3))

    def first() -> None:
        with db.write() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            first_wrote.set()
            assert second_read.wait(10)
        first_committed.set()

    def second() -> None:
        assert first_wrote.wait(10)
        with db.read() as conn:  # a deferred BEGIN: a read snapshot, no lock
            conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
            second_read.set()
            assert first_committed.wait(10)
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")

    errors = run_threads(first, second)
    assert len(errors) == 1
    assert isinstance(errors[0], sa.exc.OperationalError)
    assert "database is locked" in str(errors[0])
    assert is_transient_db_error(errors[0])


@pytest.mark.parametrize("made_here", [True, False], ids=["our engine", "engine passed in"])
def test_begin_immediate_begins_at_once_and_savepoints_stay_inside(
    tmp_path: Path, made_here: bool,
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = engine_for(url).engine if made_here else sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    with engine.connect() as conn:
        trans = begin_immediate(conn)
        raw: Any = conn.connection.dbapi_connection
        assert raw.in_transaction  # the lock is taken before the first statement
        savepoint = conn.begin_nested()
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        savepoint.commit()  # RELEASE must not commit the outer transaction
        trans.rollback()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 0
    if not made_here:
        engine.dispose()


def test_an_autocommit_connection_begins_nothing_and_leaves_the_next_write_intact(
    tmp_path: Path,
) -> None:
    db = engine_for(f"sqlite:///{tmp_path / 'a.db'}", pool_size=1)  # one connection, reused
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")  # as a source's pages are read
        conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
        raw: Any = conn.connection.dbapi_connection
        assert not raw.in_transaction
    with db.write() as conn:  # the pool reset the driver's isolation level meanwhile
        savepoint = conn.begin_nested()
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        savepoint.rollback()
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT n FROM t").scalars().all() == [2]


# -- transact --------------------------------------------------------------------------------
def test_transact_commits_a_write_and_reads(db_url: str) -> None:
    db = engine_for(db_url)
    db.transact(lambda c: c.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
    db.transact(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (7)"))
    assert db.transact(lambda c: c.exec_driver_sql("SELECT n FROM t").scalar_one(),
                       write=False) == 7


@SERVERS
def test_transact_retries_a_transaction_whose_session_was_killed(server_url: str) -> None:
    db = engine_for(server_url)
    db.transact(lambda c: c.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
    calls: list[int] = []

    def work(conn: sa.Connection) -> int:
        calls.append(1)
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        if len(calls) == 1:
            kill(server_url, session_id(conn))  # the row above dies with the session
        return int(conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one())

    assert db.transact(work) == 1
    assert len(calls) == 2
    assert db.transact(lambda c: c.exec_driver_sql("SELECT count(*) FROM t").scalar_one(),
                       write=False) == 1  # written once


@SERVERS
def test_transact_gives_up_with_the_given_error_when_time_runs_out(
    server_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    url = server_url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth ignores it
    db = engine_for(url).view(name="flow store", retry_seconds=0.5, unavailable_error=Gone)
    calls: list[int] = []

    def work(conn: sa.Connection) -> None:
        calls.append(1)
        kill(server_url, session_id(conn))
        conn.exec_driver_sql("SELECT 1")

    started = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(Gone) as err:
        db.transact(work)
    assert time.monotonic() - started < 10
    assert len(calls) >= 2
    assert isinstance(err.value.__cause__, sa.exc.DBAPIError)
    assert str(err.value).startswith(f"database 'flow store' ({db.display_url}) unavailable "
                                     f"after {len(calls)} attempt(s)")
    assert PASSWORD not in str(err.value)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    assert [r for r in caplog.records if getattr(r, "action", "") == "db_retry"]


def test_transact_raises_database_unavailable_by_default(tmp_path: Path) -> None:
    db = engine_for(f"sqlite:///{tmp_path / 'a.db'}", connect_args={"timeout": 0.05})
    db = db.view(retry_seconds=0.3)
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    holder = db.engine.connect()
    begin_immediate(holder)  # holds the write lock throughout
    try:
        with pytest.raises(DatabaseUnavailable, match="database is locked") as err:
            db.transact(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (1)"))
    finally:
        _db.release(holder)
    assert isinstance(err.value, ConnectorTimeout)
    assert is_transient(err.value)


def test_transact_does_not_retry_other_errors(db_url: str) -> None:
    db = engine_for(db_url)
    db.transact(lambda c: c.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    db.transact(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (1)"))
    calls: list[int] = []

    def duplicate(conn: sa.Connection) -> None:
        calls.append(1)
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    with pytest.raises(sa.exc.IntegrityError):
        db.transact(duplicate)
    assert len(calls) == 1


@pytest.mark.parametrize("error", [None, Unmigrated])
def test_transact_reports_missing_flow_store_tables_as_the_schema_error(
    db_url: str, error: type[Exception] | None,
) -> None:
    db = engine_for(db_url) if error is None else engine_for(db_url).view(schema_error=error)
    expected = ConfigurationError if error is None else error
    with pytest.raises(expected, match=r"tables are missing or outdated in database .*adf db "
                                       r"upgrade") as err:
        db.transact(lambda c: c.exec_driver_sql("SELECT name FROM adf_flows").all(),
                    write=False)
    assert isinstance(err.value.__cause__, sa.exc.DBAPIError)


# -- connecting and retrying (connectors) ----------------------------------------------------
def test_retrying_retries_transient_errors_then_translates_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database(sa.create_engine(UNREACHABLE), name="reporting",
                  retry=RetryPolicy(attempts=3, backoff_s=0.001))
    locked = sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
    failures = [locked, locked]
    dropped: list[int] = []

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "done"

    with caplog.at_level(logging.WARNING):
        assert db.retrying("sink", "writing", flaky, on_retry=lambda: dropped.append(1)) == "done"
    assert len(dropped) == 2
    retries = [r for r in caplog.records if getattr(r, "action", "") == "db_retry"]
    assert len(retries) == 2
    assert all(PASSWORD not in r.getMessage() for r in retries)

    def broken() -> None:
        raise sa.exc.ProgrammingError("SELECT", {}, Exception(f"syntax error near {PASSWORD}"))

    with pytest.raises(SourceError, match="reading failed: Exception: syntax error") as err:
        db.retrying("source", "reading", broken)
    assert PASSWORD not in str(err.value)
    def always_locked() -> None:
        raise locked

    with pytest.raises(ConnectorTimeout, match="after 3 attempt"):
        db.retrying("sink", "writing", always_locked)


def test_an_unreachable_database_names_itself_with_the_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_database("reporting", UNREACHABLE, retries=2, backoff=0.01)
    db = _db.resolve_database("reporting", None, "source")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorTimeout) as err:
        db.connect("source")
    assert str(err.value).startswith(
        "source: cannot connect to database 'reporting' "
        "(postgresql+psycopg://app:***@127.0.0.1:1/reports) after 2 attempt(s)")
    assert PASSWORD not in str(err.value)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


def test_translate_maps_driver_errors_to_connector_errors() -> None:
    db = Database(sa.create_engine(UNREACHABLE))
    unique = sa.exc.IntegrityError("INSERT", {}, Exception(f"duplicate key ({PASSWORD})"))
    rejected = _db.translate(unique, db, "sink", "writing", record={"id": 1}, key=1)
    assert isinstance(rejected, RecordRejected)
    assert rejected.key == 1
    assert isinstance(_db.translate(unique, db, "source", "reading"), SourceError)
    other = sa.exc.DataError("INSERT", {}, Exception("value too long"))
    assert isinstance(_db.translate(other, db, "sink", "writing"), SinkError)
    assert all(PASSWORD not in str(_db.translate(e, db, "sink", "w")) for e in (unique, other))


# -- the transient-error rule ----------------------------------------------------------------
def test_the_transient_error_rule(tmp_path: Path) -> None:
    db = engine_for(f"sqlite:///{tmp_path / 'a.db'}", pool_size=1, max_overflow=0,
                    pool_timeout=0.05)
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with pytest.raises(sa.exc.TimeoutError) as exhausted:  # the pool's one connection
            db.engine.connect()
        assert is_transient_db_error(exhausted.value)
    with db.write() as conn, pytest.raises(sa.exc.IntegrityError) as duplicate:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    assert not is_transient_db_error(duplicate.value)
    assert not is_transient_db_error(ValueError("database is locked"))  # not a driver error


@SERVERS
def test_a_killed_session_is_transient_and_a_syntax_error_is_not(server_url: str) -> None:
    engine = sa.create_engine(server_url)
    try:
        with engine.connect() as conn:
            kill(server_url, session_id(conn))
            with pytest.raises(sa.exc.DBAPIError) as killed:
                conn.exec_driver_sql("SELECT 1")
        assert is_transient_db_error(killed.value)
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as syntax:
            conn.exec_driver_sql("SELEKT 1")
        assert not is_transient_db_error(syntax.value)
    finally:
        engine.dispose()


def test_retry_pauses_double_with_jitter_up_to_the_maximum() -> None:
    policy = RetryPolicy(attempts=10, backoff_s=0.1, max_backoff_s=0.5)
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        assert base * 0.75 <= policy.pause(attempt) <= base * 1.25


# -- URLs ------------------------------------------------------------------------------------
def test_resolve_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADF_DATABASE_URL", raising=False)
    assert str(_db.resolve_url(None)) == "sqlite:///active_data_flow.db"
    assert str(_db.resolve_url(None, default="sqlite:///x.db")) == "sqlite:///x.db"
    monkeypatch.setenv("ADF_DATABASE_URL", "postgresql://u@h/env")
    assert _db.resolve_url(None).database == "env"
    assert _db.resolve_url("mysql://u@h/given").database == "given"
    monkeypatch.setenv("OTHER_URL", "sqlite:///other.db")
    assert _db.resolve_url(None, env="OTHER_URL").database == "other.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"postgresql://u:{PASSWORD}@host:port/db", r"ADF_DATABASE_URL: not a database URL: "
                                                  r"'postgresql://u:\*\*\*@host:port/db'"),
        ("not a url", "not a database URL"),
        (f"postgres://u:{PASSWORD}@h/db", r"'postgres://u:\*\*\*@h/db'.*write postgresql://"),
    ],
)
def test_resolve_url_explains_a_bad_url_with_the_password_masked(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as err:
        _db.resolve_url(url)
    assert err.value.option == "ADF_DATABASE_URL"
    assert PASSWORD not in str(err.value)


def test_same_database() -> None:
    same = _db.same_database
    url = sa.make_url
    assert same(url("postgresql+psycopg://a@localhost/db"), url("postgresql://b:pw@127.0.0.1:5432/db"))
    assert not same(url("postgresql://h/db"), url("postgresql://h/other"))
    assert not same(url("postgresql://h/db"), url("mysql://h/db"))
    assert same(url("mariadb://h:3306/db"), url("mysql+pymysql://h/db"))
    assert same(url("sqlite:///a.db"), url(f"sqlite:///{Path('a.db').resolve()}"))
    assert not same(url("sqlite:///a.db"), url("sqlite:///b.db"))


def test_database_properties_name_it_without_its_password() -> None:
    db = Database(sa.create_engine(UNREACHABLE), name="reporting")
    masked = "postgresql+psycopg://app:***@127.0.0.1:1/reports"
    assert (db.backend, db.dialect, db.display_url) == ("postgresql", "postgresql", masked)
    assert db.label == f"database 'reporting' ({masked})"
    assert repr(db) == f"<Database database 'reporting' ({masked})>"
    assert Database(db.engine).label == f"database {masked}"
    assert db.url.password == PASSWORD  # the URL itself is intact, for connecting
    assert Database(sa.create_engine("mariadb+pymysql://u@h/db")).backend == "mysql"


def test_every_configuration_message_masks_the_password() -> None:
    register_database("main", UNREACHABLE)  # no connection is made
    attempts: list[Callable[[], object]] = [
        lambda: engine_for(UNREACHABLE, pool_size=9),  # other options for a registered one
        lambda: _db.make_engine(f"nosuchdb://u:{PASSWORD}@h/db"),
        lambda: _db.make_engine(f"postgres://u:{PASSWORD}@h/db"),
        lambda: engine_for(f"postgresql://u:{PASSWORD}@h:port/db"),
        lambda: _db.check_reference(f"postgresql://u:{PASSWORD}@h/db", trusted=False,
                                    what="source"),
        lambda: _db.check_reference(f"postgresql://u:{PASSWORD}@h:port/db", trusted=True,
                                    what="source"),
        lambda: _db.resolve_url(f"postgresql://u:{PASSWORD}@h:port/db"),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError) as err:
            attempt()
        assert PASSWORD not in str(err.value)
        assert "***" in str(err.value), str(err.value)


# -- masking, as a property ------------------------------------------------------------------
plain = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=10)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(user=plain, password=st.text(min_size=1).filter(lambda p: "*" not in p),
       host=plain, db=plain)
def test_a_password_never_appears_in_what_a_database_shows(
    user: str, password: str, host: str, db: str
) -> None:
    url = sa.URL.create("postgresql+psycopg", username=user, password=password, host=host,
                        database=db)
    database = Database(sa.create_engine(url), name="x")
    masked = f"postgresql+psycopg://{user}:***@{host}/{db}"
    assert database.display_url == masked
    assert database.label == f"database 'x' ({masked})"
    # What a driver may say: the URL as it renders, or the password in its own words.
    rendered = url.render_as_string(hide_password=False)
    shown = database.mask(f"connection to {rendered} failed for {user} with {password}")
    # "***" is the mask itself: a password of stars could not help showing.
    assert password not in shown
    assert quote(password, safe=" +") not in shown  # as SQLAlchemy writes it into a URL


def test_mask_keeps_text_without_secrets() -> None:
    db = Database(sa.create_engine(UNREACHABLE))
    text = 'relation "adf_flows" does not exist'
    assert db.mask(text) == text
    assert db.mask(f"password authentication failed: {PASSWORD}") == (
        "password authentication failed: ***")
