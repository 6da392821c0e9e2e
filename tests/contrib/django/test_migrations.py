"""``manage.py migrate`` creates exactly the schema ``adf db upgrade`` (Alembic) creates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from active_data_flow.runtimes.heartbeat.store import FlowStore, schema
from tests.conftest import create_database, drop_database
from tests.contrib.django.conftest import KIND


def snapshot(url: Any) -> dict[str, Any]:
    """Every flow store table's columns, keys, indexes and constraints, as the inspector
    sees them (database-generated names aside, nothing is left out)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        inspector = sa.inspect(engine)
        tables = sorted(t for t in inspector.get_table_names() if t.startswith("adf_"))
        out: dict[str, Any] = {}
        for table in tables:
            out[table] = {
                "columns": [
                    {k: str(v) for k, v in c.items() if k != "comment"}
                    for c in inspector.get_columns(table)
                ],
                "pk": inspector.get_pk_constraint(table),
                "fks": sorted(map(repr, inspector.get_foreign_keys(table))),
                "indexes": sorted(map(repr, inspector.get_indexes(table))),
                "uniques": sorted(map(repr, inspector.get_unique_constraints(table))),
                "checks": sorted(map(repr, inspector.get_check_constraints(table))),
            }
        with engine.connect() as conn:
            out["version"] = conn.exec_driver_sql(
                f"SELECT version_num FROM {schema.VERSION_TABLE}").scalar()
        return out
    finally:
        engine.dispose()


def test_migrate_creates_the_alembic_head_schema(alias: str, tmp_path: Path) -> None:
    from active_data_flow.contrib.django.conf import sqlalchemy_url

    migrated = snapshot(sqlalchemy_url(alias))
    url = create_database(KIND[alias], tmp_path)
    try:
        store = FlowStore(url, auto_upgrade=False)
        store.upgrade()
        store.close()
        reference = snapshot(url)
    finally:
        drop_database(url)
    assert migrated["version"] == schema.head_revision() == "adf0005"
    assert set(migrated) == set(reference)
    for table in reference:
        assert migrated[table] == reference[table], table


def test_migrate_backwards_drops_the_tables_and_forwards_restores_them(alias: str) -> None:
    from django.core.management import call_command

    from active_data_flow.contrib.django.conf import sqlalchemy_url

    url = sqlalchemy_url(alias)
    before = snapshot(url)
    call_command("migrate", "active_data_flow", "zero", database=alias, verbosity=0)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        left = [t for t in sa.inspect(engine).get_table_names() if t.startswith("adf_")]
    finally:
        engine.dispose()
    call_command("migrate", "active_data_flow", database=alias, verbosity=0)
    assert left == [schema.VERSION_TABLE] or left == []
    assert snapshot(url) == before
