"""Migration adf0003 (one ``spec`` column for a flow's FlowSpec) keeps every row: the old
columns fold into the spec and back, and no run or part is lost to a table rebuild (SQLite's
batch mode with foreign keys), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from active_data_flow.runtimes.heartbeat.store import FlowStore

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).replace(tzinfo=None)
OLD_FLOW = {
    "id": 1, "name": "copy", "origin": "spec", "status": "active", "spec_hash": "old",
    "source": {"type": "memory", "config": {"records": [{"id": 1}]}},
    "sinks": [{"type": "memory", "config": {"name": "out"}}],
    "runtime": {"type": "heartbeat", "config": {"interval": 60.0}},
    "dead_letter_sink": None, "on_error": "skip", "batch_size": 7, "triggers": ["next"],
    "transform": None, "cursor": 41, "rerun_requested": False, "created_at": NOW,
    "updated_at": NOW,
}


JSON_COLUMNS = {"source", "sinks", "runtime", "dead_letter_sink", "triggers", "cursor"}


def _table(conn: sa.Connection, name: str) -> sa.Table:
    """The table as the database has it, its JSON columns typed as JSON (MariaDB reflects
    them as LONGTEXT)."""
    table = sa.Table(name, sa.MetaData(), autoload_with=conn)
    for column in table.columns:
        if column.name in JSON_COLUMNS:
            column.type = sa.JSON(none_as_null=True)
    return table


def test_upgrading_folds_the_columns_into_the_spec_and_keeps_runs_and_parts(
    db_url: str,
) -> None:
    store = FlowStore(db_url, auto_upgrade=False)
    try:
        store.upgrade("adf0002")
        with store.engine.begin() as conn:
            flows, runs = _table(conn, "adf_flows"), _table(conn, "adf_runs")
            parts = _table(conn, "adf_partitions")
            conn.execute(flows.insert().values(**OLD_FLOW))
            conn.execute(runs.insert().values(
                id=5, flow_id=1, status="running", live_flow_id=1, trigger="schedule",
                due_at=NOW, claim_token="t" * 32, attempt=1, read=3, written=3, skipped=0,
                failed=0, batches=1, created_at=NOW))
            conn.execute(parts.insert().values(
                id=9, run_id=5, flow_id=1, part=0, status="pending", source={"type": "memory"},
                run_token="t" * 32, attempt=0, hold_seconds=60.0, read=0, written=0,
                skipped=0, failed=0, batches=0, created_at=NOW))

        store.upgrade()
        flow = store.get_flow("copy")
        assert flow.spec.to_dict() == {
            "name": "copy", "source": OLD_FLOW["source"], "sinks": OLD_FLOW["sinks"],
            "runtime": OLD_FLOW["runtime"], "on_error": "skip", "dead_letter_sink": None,
            "batch_size": 7, "triggers": ["next"], "transform": None}
        assert (flow.cursor, flow.running_run_id, flow.schedule) == (41, 5, 60.0)
        assert store.get_run(5).read == 3
        assert [p.id for p in store.list_partitions(5)] == [9]

        store.downgrade("adf0002")
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(_table(conn, "adf_flows"))).mappings().one()
            assert {k: row[k] for k in ("source", "sinks", "runtime", "on_error",
                                        "batch_size", "triggers")} == {
                k: OLD_FLOW[k] for k in ("source", "sinks", "runtime", "on_error", "batch_size",
                                         "triggers")}
            assert conn.execute(sa.text("SELECT count(*) FROM adf_runs")).scalar() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM adf_partitions")).scalar() == 1
        store.upgrade()
        assert store.get_flow("copy").spec.batch_size == 7
    finally:
        store.close()


def test_sqlite_never_gives_a_deleted_flows_or_runs_id_again(sqlite_url: str) -> None:
    store = FlowStore(sqlite_url)
    spec = {"name": "once", "source": {"type": "memory", "config": {}},
            "sink": {"type": "memory", "config": {}}}
    try:
        first = store.create_flow(spec)
        run = store.trigger("once")
        store.delete_flow("once")
        again = store.create_flow(spec)
        assert again.id != first.id
        assert store.trigger("once").id != run.id
    finally:
        store.close()
