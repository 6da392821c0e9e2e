"""The inbox: records pushed to flows over HTTP (``POST /inbox/{flow}``), read by their
``http_inbox`` source by id; an idempotency key is unique per flow.

Revision ID: adf0005
Revises: adf0004
Create Date: 2026-12-01

A frozen copy of the table, like adf0001.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "adf0005"
down_revision: str | Sequence[str] | None = "adf0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name() -> sa.types.TypeEngine[str]:
    binary = mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(200).with_variant(binary, "mysql", "mariadb")


def _time() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "adf_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("flow", _name(), nullable=False),
        sa.Column("key", _name(), nullable=True),
        sa.Column("payload", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_adf_inbox"),
        sa.UniqueConstraint("flow", "key", name="uq_adf_inbox_flow_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_adf_inbox_flow_id", "adf_inbox", ["flow", "id"])


def downgrade() -> None:
    op.drop_index("ix_adf_inbox_flow_id", table_name="adf_inbox")
    op.drop_table("adf_inbox")
