"""The flow store's tables (SQLAlchemy Core), shared by the store and the migrations.

Six tables, all prefixed ``adf_`` so they sit comfortably in a host application's database:

``adf_flows``
    one row per flow: its :class:`~active_data_flow.FlowSpec` (one JSON column), status,
    cursor and a summary of its last run.
``adf_runs``
    one row per run: pending -> running -> succeeded / failed / cancelled (a running run may
    also go back to pending when its worker stops gracefully). ``live_flow_id`` equals
    ``flow_id`` exactly while the run is pending or running and is unique, so the database
    itself refuses a second live run of a flow: at most one pending-or-running run per flow.
``adf_dead_letters``
    messages a flow could not handle, kept for inspection and replay.
``adf_workers``
    one row per heartbeat caller (worker loop, web process, ``adf heartbeat``), with the time
    of its last beat.
``adf_partitions``
    the parts of a partitioned run (Celery runtime): each reads one range of the source, with
    its own checkpoint, status, worker, attempt and lease.
``adf_concurrency_locks``
    one row per concurrency key, locked while a part's claim counts the parts running.
``adf_inbox``
    records pushed to a flow over HTTP (``POST /inbox/{flow}``), kept until the flow's
    ``http_inbox`` source has read them and their retention passed; an idempotency key is
    unique per flow, so a client's retry never stores a record twice.

Every timestamp is stored as naive UTC with microseconds (MariaDB's ``DATETIME`` has no
fraction unless asked), and read back as an aware UTC ``datetime``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from active_data_flow.runtimes.heartbeat.store.records import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    FlowStatus,
    RunStatus,
)

__all__ = [
    "FLOW_STATUSES",
    "LIVE_STATUSES",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "FlowStatus",
    "RunStatus",
    "UTCDateTime",
    "concurrency_locks",
    "dead_letters",
    "flows",
    "inbox",
    "metadata",
    "partitions",
    "runs",
    "workers",
]


FLOW_STATUSES: tuple[str, ...] = tuple(s.value for s in FlowStatus)
RUN_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)

# Explicit constraint names keep migrations portable and let later revisions drop them.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC with microseconds stored."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the flow store needs aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _json() -> sa.types.TypeEngine[Any]:
    # none_as_null: a Python None is SQL NULL (an empty cursor), never the JSON text 'null'.
    return sa.JSON(none_as_null=True)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


_LIVE = _in("status", LIVE_STATUSES)

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def _name() -> sa.types.TypeEngine[str]:
    """A flow's name: compared byte for byte on every database (MariaDB's default collation
    would make ``CaseFlow`` and ``caseflow`` one name)."""
    binary = mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(200).with_variant(binary, "mysql", "mariadb")


flows = sa.Table(
    "adf_flows",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("name", _name(), nullable=False, unique=True),
    # "code": a DataFlow subclass in the application; "spec": created from a JSON spec.
    sa.Column("origin", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=FlowStatus.ACTIVE.value),
    # The FlowSpec, whole: a new flow option needs no column (and no migration).
    sa.Column("spec", _json(), nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("cursor", _json(), nullable=True),
    sa.Column("cursor_updated_at", UTCDateTime(), nullable=True),
    # Set by a trigger that arrives while the flow runs: run again as soon as it ends.
    sa.Column("rerun_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("last_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("last_run_status", sa.String(16), nullable=True),
    sa.Column("last_run_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    # Why the flow's code cannot be loaded right now (cleared when it loads again).
    sa.Column("code_error", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint(_in("status", FLOW_STATUSES), name="status"),
    sa.CheckConstraint(_in("origin", ("code", "spec")), name="origin"),
    sa.Index(None, "status", "name"),
    sqlite_autoincrement=True,  # an id is never reused after a delete
)

runs = sa.Table(
    "adf_runs",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column(
        "flow_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("adf_flows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("status", sa.String(16), nullable=False),
    # Equals flow_id while the run is pending or running, NULL otherwise; unique.
    sa.Column("live_flow_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              nullable=True, unique=True),
    # Why the run exists: schedule, manual, chain, recovery.
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("due_at", UTCDateTime(), nullable=False),
    # The claim: a fresh random token per claim fences off every earlier holder.
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("worker_id", sa.String(200), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("read", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("written", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("batches", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("duration_s", sa.Float(), nullable=True),
    sa.Column("cursor_start", _json(), nullable=True),
    sa.Column("cursor_end", _json(), nullable=True),
    sa.Column("error_type", sa.String(200), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("traceback", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    sa.CheckConstraint(
        f"({_LIVE} AND live_flow_id IS NOT NULL) OR (NOT ({_LIVE}) AND live_flow_id IS NULL)",
        name="live",
    ),
    sa.CheckConstraint(
        "(status = 'running' AND claim_token IS NOT NULL)"
        " OR (status <> 'running' AND claim_token IS NULL)",
        name="claim",
    ),
    sa.Index(None, "status", "due_at"),  # the claim query
    sa.Index(None, "status", "lease_expires_at"),  # the reclaim query
    sa.Index(None, "flow_id", "id"),  # a flow's history
    sa.Index(None, "status", "id"),  # runs by status, newest first
    sqlite_autoincrement=True,
)

dead_letters = sa.Table(
    "adf_dead_letters",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("flow", _name(), nullable=False),
    sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("position", _json(), nullable=True),
    sa.Column("error_type", sa.String(200), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("message", _json(), nullable=False),
    sa.Column("meta", _json(), nullable=True),
    sa.Column("failed_at", UTCDateTime(), nullable=False),
    sa.Column("replayed_at", UTCDateTime(), nullable=True),
    sa.Column("replay_error", sa.Text(), nullable=True),
    sa.Column("replay_attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Index(None, "flow", "id"),
)

workers = sa.Table(
    "adf_workers",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("hostname", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("last_beat_at", UTCDateTime(), nullable=False),
    sa.Column("beats", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("last_claimed", sa.Integer(), nullable=False, server_default="0"),
    sa.Index(None, "last_beat_at"),
)

# A partitioned run's parts (the Celery runtime): each reads one range of the flow's source
# and has its own checkpoint, status, worker, attempt and lease. A part also records the token
# of its run's claim: when the run is reclaimed or ended, its remaining parts are void.
partitions = sa.Table(
    "adf_partitions",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              sa.ForeignKey("adf_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("flow_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    # The part's place among its run's parts, in source order (0 reads first).
    sa.Column("part", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", _json(), nullable=False),
    sa.Column("cursor_start", _json(), nullable=True),
    sa.Column("cursor", _json(), nullable=True),
    sa.Column("run_token", sa.String(32), nullable=False),
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("worker_id", sa.String(200), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
    # The limits the run was dispatched with: every part of a run claims under the same ones.
    sa.Column("concurrency_limit", sa.Integer(), nullable=True),
    sa.Column("concurrency_group", sa.String(200), nullable=True),
    sa.Column("group_limit", sa.Integer(), nullable=True),
    # How far a part's renewal pushes its run's lease (the runtime's queue_timeout).
    sa.Column("hold_seconds", sa.Float(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("read", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("written", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("batches", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("duration_s", sa.Float(), nullable=True),
    sa.Column("error_type", sa.String(200), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("traceback", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    sa.CheckConstraint(
        "(status = 'running' AND claim_token IS NOT NULL)"
        " OR (status <> 'running' AND claim_token IS NULL)",
        name="claim",
    ),
    sa.UniqueConstraint("run_id", "part"),
    sa.Index(None, "status", "flow_id"),  # the per-flow concurrency count
    sa.Index(None, "status", "concurrency_group"),  # the per-group count
)

# One row per concurrency key ("flow:<id>", "group:<name>"), locked by a part's claim while it
# counts the parts running under that key, so that two claims never both take the last slot.
concurrency_locks = sa.Table(
    "adf_concurrency_locks",
    metadata,
    sa.Column("name", sa.String(250), primary_key=True),
)

# Records pushed over HTTP to a flow's inbox. Ids grow in commit order per flow (pushes to
# one flow are serialised by a lock on its adf_flows row), so the flow's cursor is an id.
inbox = sa.Table(
    "adf_inbox",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("flow", _name(), nullable=False),
    # The client's idempotency key (per record, or the request's key and the record's index).
    sa.Column("key", _name(), nullable=True),
    sa.Column("payload", _json(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("flow", "key"),
    sa.Index(None, "flow", "id"),
    sqlite_autoincrement=True,
)
