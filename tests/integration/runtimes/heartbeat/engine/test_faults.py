"""Database faults in the middle of runs: a killed session, a restarted PostgreSQL.

The sink holds a batch's transaction open (the batch written, its cursor written through the
same connection) and waits while the test kills that connection or restarts the server. The
run then completes through a bounded retry, or fails with the error recorded; the cursor never
covers rows that were not written; the next heartbeat works (pool pre-ping). Integrity errors
are never retried.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from active_data_flow.connectors.sqlalchemy._db import is_transient_db_error
from active_data_flow.registry import register_connector
from active_data_flow.runtimes.heartbeat import FlowStore, beat
from tests.conftest import need, reachable
from tests.integration.runtimes.heartbeat import sqlkit

ROWS = 100
BATCH = 10


@register_connector("test_table_pausing")
class PausingSink(sqlkit.TableSink):
    """A table sink that, on flush ``pause_on``, stops inside the batch's transaction (rows
    and cursor written, not committed) until the test has done its damage."""

    reached: ClassVar[threading.Event] = threading.Event()
    resume: ClassVar[threading.Event] = threading.Event()
    session: ClassVar[dict[str, Any]] = {}
    flushes: ClassVar[int] = 0

    class Config(sqlkit.TableSink.Config):
        pause_on: int = 3

    config: Config

    def _commit(self, rows: list[dict[str, Any]], hook: Callable[[Any], bool] | None) -> bool:
        if hook is None or not rows:
            return super()._commit(rows, hook)
        type(self).flushes += 1
        if type(self).flushes != self.config.pause_on:
            return super()._commit(rows, hook)

        def pause_then_hook(conn: sa.Connection) -> bool:
            written = hook(conn)
            dbapi = conn.connection.dbapi_connection
            type(self).session["id"] = (dbapi.info.backend_pid if hasattr(dbapi, "info")
                                        else dbapi.thread_id())
            type(self).reached.set()
            assert type(self).resume.wait(30)
            conn.exec_driver_sql("SELECT 1")  # the connection's fate shows here or at commit
            return written

        return super()._commit(rows, pause_then_hook)


@pytest.fixture
def pausing() -> Iterator[type[PausingSink]]:
    PausingSink.reached, PausingSink.resume = threading.Event(), threading.Event()
    PausingSink.session, PausingSink.flushes = {}, 0
    yield PausingSink
    PausingSink.resume.set()


def copy_flow(store: FlowStore, url: str, *, attempts: int, sink: str = "test_table_pausing",
              **config: Any) -> None:
    sqlkit.fill(url, "src", ROWS)
    sqlkit.create(url, sqlkit.append_table("dst"))
    store.create_flow({
        "name": "copy",
        "source": {"type": "test_table", "config": {"url": url, "table": "src"}},
        "sink": {"type": sink, "config": {"url": url, "table": "dst", **config}},
        "runtime": {"type": "heartbeat", "config": {
            "batch_size": BATCH, "interval": 3600, "max_attempts": attempts,
            "backoff": 0.3, "backoff_max": 2}},
    })


def beat_in_thread(store: FlowStore) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(beat(store)))
    thread.start()
    return thread, out


def kill_session(url: str, session: int) -> None:
    admin = sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if url.startswith("postgresql"):
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": session}
                                ).scalar()
        else:
            conn.exec_driver_sql(f"KILL CONNECTION {int(session)}")
    admin.dispose()


def assert_consistent(store: FlowStore, url: str) -> None:
    """The cursor covers exactly the rows in the target: nothing unwritten, no duplicate."""
    cursor = store.get_flow("copy").cursor or 0
    assert sqlkit.ids(url, "dst") == list(range(1, cursor + 1))


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_killed_session_mid_batch_is_retried_and_the_copy_completes(
    kind: str, make_database: Any, pausing: type[PausingSink]
) -> None:
    url = make_database(kind)
    store = FlowStore(url, auto_upgrade=True)
    copy_flow(store, url, attempts=3)
    thread, out = beat_in_thread(store)
    assert pausing.reached.wait(30)
    kill_session(url, pausing.session["id"])
    pausing.resume.set()
    thread.join(60)

    [summary] = out
    run = store.get_run(summary.claimed[0])
    assert (run.status, run.attempt) == ("succeeded", 2)
    assert sqlkit.ids(url, "dst") == list(range(1, ROWS + 1))  # the killed batch rolled back
    assert_consistent(store, url)
    store.trigger("copy")
    assert beat(store).succeeded  # the pool replaced the dead connection
    store.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_run_out_of_attempts_fails_with_the_error_and_a_consistent_cursor(
    kind: str, make_database: Any, pausing: type[PausingSink]
) -> None:
    url = make_database(kind)
    store = FlowStore(url, auto_upgrade=True)
    copy_flow(store, url, attempts=1)
    thread, out = beat_in_thread(store)
    assert pausing.reached.wait(30)
    kill_session(url, pausing.session["id"])
    pausing.resume.set()
    thread.join(60)

    run = store.get_run(out[0].failed[0])
    assert run.attempt == 1
    assert run.error_type == "active_data_flow.errors.ConnectorTimeout"
    assert run.traceback
    assert store.get_flow("copy").cursor == 2 * BATCH  # the two batches before the fault
    assert_consistent(store, url)
    store.close()


def pg_cluster() -> tuple[str, str] | None:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*")) if Path(
        "/etc/postgresql").is_dir() else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return None
    return versions[-1], "main"


def pg_ctl(action: str, *extra: str) -> None:
    cluster = pg_cluster()
    assert cluster is not None
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, *extra],
                   check=True, capture_output=True, timeout=60)


@pytest.mark.slow
def test_postgresql_restarted_mid_run_the_run_completes_and_the_next_beat_works(
    make_database: Any, pausing: type[PausingSink]
) -> None:
    need("pg_ctlcluster (to restart PostgreSQL)", available=pg_cluster() is not None)
    url = make_database("postgresql")
    store = FlowStore(url, auto_upgrade=True)
    copy_flow(store, url, attempts=5)
    thread, out = beat_in_thread(store)
    try:
        assert pausing.reached.wait(30)
        pg_ctl("restart", "-m", "immediate")
    finally:
        deadline = time.monotonic() + 30
        while not reachable("127.0.0.1:5432"):  # never leave PostgreSQL stopped
            if time.monotonic() > deadline:
                pg_ctl("start")
                break
            time.sleep(0.1)
        pausing.resume.set()
    thread.join(60)

    run = store.get_run(out[0].claimed[0])
    assert run.status == "succeeded"
    assert run.attempt >= 2
    assert sqlkit.ids(url, "dst") == list(range(1, ROWS + 1))
    assert_consistent(store, url)
    store.trigger("copy")
    assert beat(store).succeeded
    store.close()


def test_integrity_errors_fail_the_run_at_once_and_are_never_retried(
    store: FlowStore, db_url: str
) -> None:
    sqlkit.fill(db_url, "src", ROWS)
    sqlkit.fill(db_url, "dst", 0)
    with sqlkit.engine(db_url).begin() as conn:  # a row the copy will collide with
        conn.execute(sqlkit.data_table("dst").insert().values(id=35, value="taken"))
    store.create_flow({
        "name": "copy",
        "source": {"type": "test_table", "config": {"url": db_url, "table": "src"}},
        "sink": {"type": "test_table", "config": {"url": db_url, "table": "dst",
                                                  "mode": "insert"}},
        "runtime": {"type": "heartbeat", "config": {"batch_size": BATCH, "max_attempts": 5,
                                                    "backoff": 0.01}},
    })
    store.trigger("copy")
    run = store.get_run(beat(store).failed[0])
    assert run.attempt == 1
    assert run.error_type == "active_data_flow.errors.SinkError"
    assert "IntegrityError" in (run.error or "")
    assert store.get_flow("copy").cursor == 30  # three batches went in; the fourth did not
    with pytest.raises(sa.exc.IntegrityError) as caught, sqlkit.engine(db_url).begin() as c:
        c.execute(sqlkit.data_table("dst").insert().values(id=1, value="again"))
    assert not is_transient_db_error(caught.value)
