"""The store's Alembic migrations: round trips on every database, the migrated schema equals
the models, the revisions live on their own branch and version table, they merge into a
host application's history, and they ship in the wheel."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from active_data_flow.runtimes.heartbeat.store import FlowStore, StoreNotMigrated
from active_data_flow.runtimes.heartbeat.store.models import metadata
from active_data_flow.runtimes.heartbeat.store.schema import (
    BRANCH,
    VERSION_TABLE,
    head_revision,
    migrations_path,
)
from tests.integration.runtimes.heartbeat.conftest import memory_flow

ROOT = Path(__file__).resolve().parents[5]
TABLES = {"adf_flows", "adf_runs", "adf_dead_letters", "adf_workers", "adf_partitions",
          "adf_concurrency_locks", "adf_inbox"}


def schema_differences(engine: sa.Engine) -> list[Any]:
    """What autogenerate would change to make the database match the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "version_table": VERSION_TABLE,
            "include_name": lambda name, kind, _p: kind != "table" or name in TABLES,
        })
        return list(compare_metadata(context, metadata))


def test_upgrade_downgrade_upgrade_round_trips_and_matches_the_models(db_url: str) -> None:
    store = FlowStore(db_url, auto_upgrade=False)
    assert store.current() is None
    with pytest.raises(StoreNotMigrated, match="adf db upgrade"):
        store.list_flows()

    store.upgrade()
    assert store.current() == head_revision()
    assert store.is_current()
    assert schema_differences(store.engine) == []
    store.create_flow(memory_flow("copy", [{"id": 1}], "out", interval=60))

    store.downgrade("base")
    assert store.current() is None
    assert set(sa.inspect(store.engine).get_table_names()) & TABLES == set()

    store.upgrade()
    assert schema_differences(store.engine) == []
    assert store.list_flows().total == 0
    store.close()


def test_the_embedded_sqlite_store_migrates_itself(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADF_DATABASE_URL", raising=False)
    with FlowStore() as store:
        assert store.url == "sqlite:///active_data_flow.db"
        assert store.is_current()
    assert (tmp_path / "active_data_flow.db").is_file()
    monkeypatch.setenv("ADF_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    with FlowStore() as store:
        assert store.url.endswith("other.db")
        assert store.is_current()


def test_the_revisions_sit_on_their_own_branch_with_their_own_version_table(
    sqlite_url: str,
) -> None:
    config = Config()
    config.set_main_option("script_location",
                           "active_data_flow.runtimes.heartbeat.store:migrations")
    script = ScriptDirectory.from_config(config)
    base = [r for r in script.walk_revisions() if r.down_revision is None]
    assert [r.branch_labels for r in base] == [{BRANCH}]
    assert script.get_revision(f"{BRANCH}@head").revision == head_revision()

    store = FlowStore(sqlite_url)
    tables = set(sa.inspect(store.engine).get_table_names())
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables
    store.close()


HOST_REVISION = '''
"""host app: its own table

Revision ID: host0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "host0001"
down_revision = None
branch_labels = ("host",)
depends_on = None


def upgrade():
    op.create_table("customers", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("customers")
'''

HOST_ENV = '''
from alembic import context
import sqlalchemy as sa

config = context.config
engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
'''


def test_a_host_application_can_merge_the_revisions_into_its_own_history(
    tmp_path: Path, db_url: str
) -> None:
    """The documented recipe: add ``migrations_path()`` to the host's version_locations."""
    host = tmp_path / "host_migrations"
    (host / "versions").mkdir(parents=True)
    (host / "env.py").write_text(textwrap.dedent(HOST_ENV))
    (host / "versions" / "host0001.py").write_text(textwrap.dedent(HOST_REVISION))
    config = Config()
    config.set_main_option("script_location", str(host))
    config.set_main_option("version_locations", f"{host / 'versions'} {migrations_path()}")
    config.set_main_option("path_separator", "space")
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))

    command.upgrade(config, "heads")

    engine = sa.create_engine(db_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        versions = set(conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                       .scalars())
    assert versions == {"host0001", head_revision()}
    assert TABLES | {"customers"} <= set(sa.inspect(engine).get_table_names())
    assert schema_differences(engine) == []

    command.downgrade(config, f"{BRANCH}@base")  # the flow store's branch alone goes away
    assert set(sa.inspect(engine).get_table_names()) & TABLES == set()
    assert "customers" in sa.inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.slow
def test_the_wheel_ships_the_migrations(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d",
                    str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    base = "active_data_flow/runtimes/heartbeat/store/migrations/"
    assert f"{base}env.py" in names
    assert f"{base}script.py.mako" in names
    assert any(n.startswith(f"{base}versions/adf0001") for n in names)
