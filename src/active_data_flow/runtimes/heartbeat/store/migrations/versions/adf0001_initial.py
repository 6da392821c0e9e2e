"""Flow store: flows, runs, dead letters, workers.

Revision ID: adf0001
Revises:
Create Date: 2026-11-22

The base of the ``active_data_flow`` branch. A frozen copy of the schema (not built from the
models), so that later revisions stay replayable whatever the models become. Every name is
final (``op.f``): a host application's naming convention must not rename these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "adf0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("active_data_flow",)
depends_on: str | Sequence[str] | None = None

_LIVE = "status IN ('pending', 'running')"


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "adf_flows",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("source", _json(), nullable=False),
        sa.Column("sinks", _json(), nullable=False),
        sa.Column("runtime", _json(), nullable=False),
        sa.Column("dead_letter_sink", _json(), nullable=True),
        sa.Column("on_error", sa.String(16), nullable=False, server_default="fail"),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column("triggers", _json(), nullable=True),
        sa.Column("transform", sa.String(200), nullable=True),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("cursor", _json(), nullable=True),
        sa.Column("cursor_updated_at", _time(), nullable=True),
        sa.Column("rerun_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_run_id", _id(), nullable=True),
        sa.Column("last_run_status", sa.String(16), nullable=True),
        sa.Column("last_run_at", _time(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("code_error", sa.Text(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adf_flows")),
        sa.UniqueConstraint("name", name=op.f("uq_adf_flows_name")),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f("ck_adf_flows_status")),
        sa.CheckConstraint("origin IN ('code', 'spec')", name=op.f("ck_adf_flows_origin")),
    )
    op.create_index(op.f("ix_adf_flows_status_name"), "adf_flows", ["status", "name"])

    op.create_table(
        "adf_runs",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("flow_id", _id(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("live_flow_id", _id(), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("due_at", _time(), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", _time(), nullable=True),
        sa.Column("heartbeat_at", _time(), nullable=True),
        sa.Column("lease_expires_at", _time(), nullable=True),
        sa.Column("ended_at", _time(), nullable=True),
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
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adf_runs")),
        sa.ForeignKeyConstraint(["flow_id"], ["adf_flows.id"], ondelete="CASCADE",
                                name=op.f("fk_adf_runs_flow_id_adf_flows")),
        # At most one pending-or-running run per flow, enforced by the database.
        sa.UniqueConstraint("live_flow_id", name=op.f("uq_adf_runs_live_flow_id")),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_adf_runs_status"),
        ),
        sa.CheckConstraint(
            f"({_LIVE} AND live_flow_id IS NOT NULL) OR (NOT ({_LIVE}) AND live_flow_id IS NULL)",
            name=op.f("ck_adf_runs_live"),
        ),
        sa.CheckConstraint(
            "(status = 'running' AND claim_token IS NOT NULL)"
            " OR (status <> 'running' AND claim_token IS NULL)",
            name=op.f("ck_adf_runs_claim"),
        ),
    )
    op.create_index(op.f("ix_adf_runs_status_due_at"), "adf_runs", ["status", "due_at"])
    op.create_index(op.f("ix_adf_runs_status_lease_expires_at"), "adf_runs",
                    ["status", "lease_expires_at"])
    op.create_index(op.f("ix_adf_runs_flow_id_id"), "adf_runs", ["flow_id", "id"])
    op.create_index(op.f("ix_adf_runs_status_id"), "adf_runs", ["status", "id"])

    op.create_table(
        "adf_dead_letters",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("run_id", _id(), nullable=True),
        sa.Column("position", _json(), nullable=True),
        sa.Column("error_type", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("message", _json(), nullable=False),
        sa.Column("meta", _json(), nullable=True),
        sa.Column("failed_at", _time(), nullable=False),
        sa.Column("replayed_at", _time(), nullable=True),
        sa.Column("replay_error", sa.Text(), nullable=True),
        sa.Column("replay_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adf_dead_letters")),
    )
    op.create_index(op.f("ix_adf_dead_letters_flow_id"), "adf_dead_letters", ["flow", "id"])

    op.create_table(
        "adf_workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("hostname", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("last_beat_at", _time(), nullable=False),
        sa.Column("beats", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_claimed", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adf_workers")),
    )
    op.create_index(op.f("ix_adf_workers_last_beat_at"), "adf_workers", ["last_beat_at"])


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key uses).
    for table in ("adf_workers", "adf_dead_letters", "adf_runs", "adf_flows"):
        op.drop_table(table)
