"""Partitioned runs: the parts of a run (their own checkpoint, worker, lease), and one lock
row per concurrency key.

Revision ID: adf0002
Revises: adf0001
Create Date: 2026-11-22

A frozen copy of the schema, like adf0001.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "adf0002"
down_revision: str | Sequence[str] | None = "adf0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "adf_partitions",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("flow_id", _id(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", _json(), nullable=False),
        sa.Column("cursor_start", _json(), nullable=True),
        sa.Column("cursor", _json(), nullable=True),
        sa.Column("run_token", sa.String(32), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("concurrency_group", sa.String(200), nullable=True),
        sa.Column("group_limit", sa.Integer(), nullable=True),
        sa.Column("hold_seconds", sa.Float(), nullable=False),
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
        sa.Column("error_type", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adf_partitions")),
        sa.ForeignKeyConstraint(["run_id"], ["adf_runs.id"], ondelete="CASCADE",
                                name=op.f("fk_adf_partitions_run_id_adf_runs")),
        sa.UniqueConstraint("run_id", "part", name=op.f("uq_adf_partitions_run_id_part")),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_adf_partitions_status"),
        ),
        sa.CheckConstraint(
            "(status = 'running' AND claim_token IS NOT NULL)"
            " OR (status <> 'running' AND claim_token IS NULL)",
            name=op.f("ck_adf_partitions_claim"),
        ),
    )
    op.create_index(op.f("ix_adf_partitions_status_flow_id"), "adf_partitions",
                    ["status", "flow_id"])
    op.create_index(op.f("ix_adf_partitions_status_concurrency_group"), "adf_partitions",
                    ["status", "concurrency_group"])

    op.create_table(
        "adf_concurrency_locks",
        sa.Column("name", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_adf_concurrency_locks")),
    )


def downgrade() -> None:
    op.drop_table("adf_concurrency_locks")
    op.drop_table("adf_partitions")
