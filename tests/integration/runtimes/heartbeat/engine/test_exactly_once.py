"""Exactly once where it can be had: a sink writing to the store's own database commits the
batch and the cursor in one transaction; a sink elsewhere commits first and the cursor right
after (at-least-once). Fencing reaches into the sink's transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from active_data_flow import DataFlow
from active_data_flow.connectors.sqlalchemy import SqlAlchemySink
from active_data_flow.errors import RunClaimLost
from active_data_flow.registry import register_connector
from active_data_flow.runtimes.heartbeat import Executor, FlowStore, Heartbeat, beat, sync
from active_data_flow.runtimes.heartbeat.engine.executor import StoreCheckpoint, _RunWork
from active_data_flow.runtimes.heartbeat.engine.leases import Held
from active_data_flow.runtimes.heartbeat.store import ClaimedRun
from tests.integration.runtimes.heartbeat import sqlkit
from tests.integration.runtimes.heartbeat.conftest import Clock

ROWS = 50


def kind_of(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].replace("mysql", "mariadb")


def checkpoint_of(store: FlowStore, claim: ClaimedRun) -> StoreCheckpoint:
    """The checkpoint the executor gives a run it holds."""
    return StoreCheckpoint(_RunWork(store, claim), Held(claim))


def copy_spec(name: str, source_url: str, target_url: str, *, sink_type: str = "test_table",
              mode: str = "append", batch: int = 10, **sink: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"type": "test_table", "config": {"url": source_url, "table": "src"}},
        "sink": {"type": sink_type, "config": {"url": target_url, "table": "dst", "mode": mode,
                                               **sink}},
        "runtime": {"type": "heartbeat", "config": {"batch_size": batch, "interval": 3600}},
    }


@register_connector("test_table_failing")
class FailingCommitSink(sqlkit.TableSink):
    """Fails the transaction of flush ``fail_on`` after its hook wrote the cursor in it."""

    flushes: ClassVar[int] = 0

    class Config(sqlkit.TableSink.Config):
        fail_on: int = 3

    config: Config

    def _commit(self, rows: list[dict[str, Any]], hook: Callable[[Any], bool] | None) -> bool:
        if hook is None or not rows:
            return super()._commit(rows, hook)
        type(self).flushes += 1
        if type(self).flushes != self.config.fail_on:
            return super()._commit(rows, hook)

        def then_fail(conn: Any) -> bool:
            assert hook(conn)  # the cursor is written in the batch's transaction...
            raise sa.exc.IntegrityError("INSERT", {}, Exception("injected"))  # ...then it fails

        return super()._commit(rows, then_fail)


def test_batch_and_cursor_commit_together_when_the_sink_shares_the_store_database(
    store: FlowStore, db_url: str
) -> None:
    sqlkit.fill(db_url, "src", ROWS)
    sqlkit.create(db_url, sqlkit.append_table("dst"))
    FailingCommitSink.flushes = 0
    store.create_flow(copy_spec("copy", db_url, db_url, sink_type="test_table_failing"))

    failed = store.get_run(beat(store).failed[0])
    assert failed.error_type == "active_data_flow.errors.SinkError"  # not retried
    # Batches 1-2 committed with their cursor; batch 3's rows and cursor rolled back together.
    assert store.get_flow("copy").cursor == 20
    assert sqlkit.ids(db_url, "dst") == list(range(1, 21))

    store.trigger("copy")
    assert beat(store).succeeded
    assert sqlkit.ids(db_url, "dst") == list(range(1, ROWS + 1))  # append sink, no duplicate
    assert store.get_flow("copy").cursor == ROWS


def test_a_sink_in_another_database_commits_first_and_the_cursor_right_after(
    store: FlowStore, db_url: str, make_database: Any
) -> None:
    other = make_database(kind_of(db_url))
    sqlkit.fill(db_url, "src", ROWS)
    sqlkit.create(other, sqlkit.data_table("dst"))
    store.create_flow(copy_spec("copy", db_url, other, mode="upsert"))
    [claim] = store.runs.claim_due("w1")

    checkpoint = checkpoint_of(store, claim)
    with sqlkit.engine(other).begin() as conn:
        assert not checkpoint.within(conn, 5)  # another database: not through its transaction
    assert store.get_flow("copy").cursor is None
    with sqlkit.engine(db_url).begin() as conn:
        assert checkpoint.within(conn, 5)  # the store's database, another engine: yes
    assert store.get_flow("copy").cursor == 5
    store.runs.release(claim, reason="test")

    assert beat(store).succeeded
    assert sqlkit.ids(other, "dst") == list(range(6, ROWS + 1))


def test_a_fenced_off_checkpoint_rolls_the_sinks_batch_back(
    make_store: Callable[..., FlowStore], clock: Clock, db_url: str
) -> None:
    store = make_store(clock=clock, lease_seconds=10)
    sqlkit.fill(db_url, "src", ROWS)
    sqlkit.create(db_url, sqlkit.append_table("dst"))
    store.create_flow(copy_spec("copy", db_url, db_url))
    [claim] = store.runs.claim_due("old")
    clock.advance(11)
    store.runs.reclaim_expired()

    sink = sqlkit.TableSink(url=db_url, table="dst")
    sink.write_batch([{"id": 1, "value": "late"}])
    with pytest.raises(RunClaimLost, match="'old' no longer holds its claim"):
        sink.flush_with(lambda conn: checkpoint_of(store, claim).within(conn, 1))
    assert sqlkit.ids(db_url, "dst") == []
    assert store.get_flow("copy").cursor is None


def test_the_sqlalchemy_sink_commits_the_cursor_inside_its_own_transaction(
    make_store: Callable[..., FlowStore], clock: Clock, db_url: str
) -> None:
    """With the real SQLAlchemy sink writing to the store's database, a fenced-off worker's
    batch rolls back with its rejected cursor: batch and cursor share the transaction."""
    class Base(DeclarativeBase):
        pass

    class Copied(Base):
        __tablename__ = "copied"
        n: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        id: Mapped[int]
        value: Mapped[str] = mapped_column(sa.String(100))

    store = make_store(clock=clock, lease_seconds=10)
    sqlkit.fill(db_url, "src", ROWS)
    Base.metadata.create_all(sqlkit.engine(db_url))

    class CopyWithModel(DataFlow):
        source = sqlkit.TableSource(url=db_url, table="src")
        sink = SqlAlchemySink(model=Copied, database=db_url)
        runtime = Heartbeat(interval=3600, batch_size=10)

    sync(store, CopyWithModel)
    [stale] = store.runs.claim_due("old")
    clock.advance(11)
    assert store.runs.reclaim_expired() == [stale.run_id]

    assert Executor(store).execute(stale) is None  # fenced off at its first checkpoint...
    with sqlkit.engine(db_url).connect() as conn:  # ...and its batch rolled back with it
        assert conn.execute(sa.select(sa.func.count()).select_from(Copied)).scalar() == 0

    assert beat(store).succeeded  # the recovery run copies everything, once
    with sqlkit.engine(db_url).connect() as conn:
        copied = list(conn.execute(sa.select(Copied.id).order_by(Copied.n)).scalars())
    assert copied == list(range(1, ROWS + 1))
    assert store.get_flow("copy_with_model").cursor == ROWS
