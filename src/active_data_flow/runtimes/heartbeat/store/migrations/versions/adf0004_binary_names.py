"""Flow names compare byte for byte on MariaDB/MySQL too: ``adf_flows.name`` and
``adf_dead_letters.flow`` get the ``utf8mb4_bin`` collation, so ``CaseFlow`` and
``caseflow`` are two flows (as on SQLite and PostgreSQL) and ``GET /api/flows/CASEFLOW``
finds neither.

Revision ID: adf0004
Revises: adf0003
Create Date: 2026-12-01

Other databases are unchanged. Downgrading restores the table's default collation; it fails
(a unique violation) while two flows' names differ only in case: rename one first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "adf0004"
down_revision: str | Sequence[str] | None = "adf0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("adf_flows", "name"), ("adf_dead_letters", "flow"))


def _on_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if not _on_mysql():
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, existing_nullable=False, existing_type=sa.String(200),
                        type_=mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"))


def downgrade() -> None:
    if not _on_mysql():
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, existing_nullable=False,
                        existing_type=mysql.VARCHAR(200, collation="utf8mb4_bin"),
                        type_=sa.String(200))
