"""The Django test project: settings, pytest-django, and database helpers.

Tests asking for ``alias`` run on each ``DATABASES`` alias of ``settings.py`` (SQLite,
PostgreSQL, MariaDB), marked ``django_db(databases=[alias], transaction=True)``:
pytest-django creates each test database once per session with ``migrate`` (so the flow
store's tables exist too) and empties the project's tables after each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import django
import pytest
import sqlalchemy as sa

from tests.conftest import MARIADB_HOST, PG_HOST, need

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.contrib.django.settings"
django.setup()
# Configured now (pytest-django sees ``settings.configured``): take the variable back out, or
# every later test's subprocesses inherit it (a Celery worker then runs Django's setup on
# this test module's settings, and an example's manage.py keeps them instead of its own).
del os.environ["DJANGO_SETTINGS_MODULE"]

ALIASES = ("default", "postgresql", "mariadb")
KIND = {"default": "sqlite", "postgresql": "postgresql", "mariadb": "mariadb"}
STORE_TABLES = ("adf_dead_letters", "adf_partitions", "adf_runs", "adf_flows", "adf_workers",
                "adf_concurrency_locks")


@pytest.fixture(params=[
    pytest.param(a, marks=pytest.mark.django_db(databases=[a], transaction=True), id=KIND[a])
    for a in ALIASES
])
def alias(request: pytest.FixtureRequest) -> str:
    """A DATABASES alias of each kind (the servers are required under CI)."""
    if request.param == "postgresql":
        need("postgresql", PG_HOST)
    elif request.param == "mariadb":
        need("mariadb", MARIADB_HOST)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def engine(alias: str) -> Iterator[sa.Engine]:
    """A SQLAlchemy engine on the alias's test database (a connection of the test's own);
    the flow store's tables are emptied afterwards."""
    from active_data_flow.connectors.sqlalchemy import dispose_engines
    from active_data_flow.contrib.django.conf import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(alias), poolclass=sa.NullPool)
    yield engine
    with engine.begin() as conn:
        for table in STORE_TABLES:
            conn.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()
    dispose_engines()
