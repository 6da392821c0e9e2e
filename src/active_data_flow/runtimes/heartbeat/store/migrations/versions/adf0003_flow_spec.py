"""One column for a flow's spec: ``adf_flows.spec`` holds the whole FlowSpec as JSON, in place
of one column per field (source, sinks, runtime, dead_letter_sink, on_error, batch_size,
triggers, transform), so a new flow option needs no migration.

Revision ID: adf0003
Revises: adf0002
Create Date: 2026-12-01

The data moves both ways: upgrade folds the columns into the spec, downgrade unfolds it.
On SQLite, flow and run ids also become AUTOINCREMENT: an id is never given again after its
row was deleted (a run's URL never points at another run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "adf0003"
down_revision: str | Sequence[str] | None = "adf0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FIELDS = ("source", "sinks", "runtime", "dead_letter_sink", "on_error", "batch_size",
           "triggers", "transform")


_AUTOINCREMENT = {"sqlite_autoincrement": True}


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True)


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("source", _json(), nullable=True),
        sa.Column("sinks", _json(), nullable=True),
        sa.Column("runtime", _json(), nullable=True),
        sa.Column("dead_letter_sink", _json(), nullable=True),
        sa.Column("on_error", sa.String(16), nullable=True),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column("triggers", _json(), nullable=True),
        sa.Column("transform", sa.String(200), nullable=True),
    ]


def _flows(*extra: sa.Column[Any]) -> sa.TableClause:
    return sa.table("adf_flows", sa.column("id", sa.Integer()), sa.column("name", sa.String()),
                    *(sa.column(c.name, c.type) for c in extra))


def upgrade() -> None:
    with op.batch_alter_table("adf_flows") as batch:
        batch.add_column(sa.Column("spec", _json(), nullable=True))
    conn = op.get_bind()
    old = _flows(*_columns())
    new = _flows(sa.Column("spec", _json()))
    for row in conn.execute(sa.select(old)).mappings().all():
        spec = {"name": row["name"], **{f: row[f] for f in _FIELDS}}
        spec["triggers"] = list(spec["triggers"] or [])
        spec["on_error"] = spec["on_error"] or "fail"
        conn.execute(new.update().where(new.c.id == row["id"]).values(spec=spec))
    with op.batch_alter_table("adf_flows", table_kwargs=_AUTOINCREMENT) as batch:
        for field in _FIELDS:
            batch.drop_column(field)
        batch.alter_column("spec", existing_type=_json(), nullable=False)
    if conn.dialect.name == "sqlite":
        with op.batch_alter_table("adf_runs", recreate="always", table_kwargs=_AUTOINCREMENT):
            pass


def downgrade() -> None:
    with op.batch_alter_table("adf_flows") as batch:
        for column in _columns():
            batch.add_column(column)
    conn = op.get_bind()
    old = _flows(*_columns())
    new = _flows(sa.Column("spec", _json()))
    for row in conn.execute(sa.select(new)).mappings().all():
        spec = row["spec"] or {}
        values = {f: spec.get(f) for f in _FIELDS}
        values["runtime"] = values["runtime"] or {"type": "inline", "config": {}}
        values["on_error"] = values["on_error"] or "fail"
        conn.execute(old.update().where(old.c.id == row["id"]).values(**values))
    with op.batch_alter_table("adf_flows") as batch:
        for field in ("source", "sinks", "runtime", "on_error"):
            batch.alter_column(field, existing_type=_json() if field != "on_error"
                               else sa.String(16), nullable=False,
                               server_default="fail" if field == "on_error" else None)
        batch.drop_column("spec")
