"""``manage.py adf <verb>``: the ``adf`` command line with the project's flows and store,
run as a user runs it (a subprocess), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[3]


def manage(url: str, *args: str, check: bool = True,
           env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {}),
           "DJANGO_SETTINGS_MODULE": "tests.contrib.django.settings",
           "ADF_DJANGO_DEFAULT_URL": url, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    for name in ("ADF_DATABASE_URL", "ADF_FLOWS"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def add_customers(url: str, ids: range, minute: int = 0) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            for i in ids:
                conn.execute(sa.text(
                    "INSERT INTO testapp_customer (id, email, name, region, updated_at) "
                    "VALUES (:id, :email, :name, 'eu', :at)"),
                    {"id": i, "email": f"User{i}@Example.com", "name": f"user {i}",
                     "at": dt.datetime(2024, 1, 1) + dt.timedelta(minutes=minute + i)})
    finally:
        engine.dispose()


def scalar(url: str, sql: str | sa.Select[Any]) -> Any:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql) if isinstance(sql, str) else sql).scalar()
    finally:
        engine.dispose()


def test_adf_verbs_run_the_projects_flows_on_its_database(db_url: str) -> None:
    manage(db_url, "migrate", "--run-syncdb", "-v", "0")
    add_customers(db_url, range(1, 101))

    help_text = manage(db_url, "adf", "--help").stdout
    for verb in ("sync", "worker", "heartbeat", "run", "list", "runs", "pause", "resume"):
        assert verb in help_text

    assert "copy_customers" in manage(db_url, "adf", "sync").stdout
    assert "copy_customers" in manage(db_url, "adf", "list").stdout

    first = json.loads(manage(db_url, "adf", "run", "copy_customers", "--json").stdout)
    assert first["status"] == "succeeded"
    assert scalar(db_url, "SELECT count(*) FROM testapp_reportcustomer") == 100
    cursor = scalar(db_url, sa.select(sa.column("cursor")).select_from(sa.table("adf_flows")).where(
        sa.column("name") == "copy_customers"))
    assert (json.loads(cursor) if isinstance(cursor, str) else cursor) == [
        "2024-01-01T01:40:00+00:00", 100]

    add_customers(db_url, range(101, 111), minute=100)
    second = json.loads(manage(db_url, "adf", "run", "copy_customers", "--json").stdout)
    assert (second["read"], second["written"]) == (10, 10)
    assert scalar(db_url, "SELECT count(*) FROM testapp_reportcustomer") == 110

    runs = manage(db_url, "adf", "runs", "copy_customers").stdout
    assert runs.count("succeeded") >= 2
    manage(db_url, "adf", "pause", "copy_customers")
    assert scalar(db_url, "SELECT status FROM adf_flows WHERE name = 'copy_customers'") == "paused"
    manage(db_url, "adf", "resume", "copy_customers")
    assert scalar(db_url, "SELECT status FROM adf_flows WHERE name = 'copy_customers'") == "active"


def test_an_unknown_verb_fails_with_adfs_message(sqlite_url: str) -> None:
    result = manage(sqlite_url, "adf", "nope", check=False)
    assert result.returncode != 0
    assert "No such command 'nope'" in result.stderr


def test_the_projects_settings_become_the_adf_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from active_data_flow.contrib.django.management.commands.adf import configure

    # configure() exports the settings into this process's environment (the command's own
    # process, normally): give the variables back afterwards, or later tests load these flows.
    for name in ("ADF_DATABASE_URL", "ADF_FLOWS", "ADF_HEARTBEAT_TOKEN", "ADF_LEASE_SECONDS"):
        monkeypatch.setenv(name, "")
    values = configure()
    assert values["ADF_FLOWS"].split(",") == ["tests.contrib.django.testapp.data_flows"]
    assert values["ADF_DATABASE_URL"].startswith("sqlite:///")
