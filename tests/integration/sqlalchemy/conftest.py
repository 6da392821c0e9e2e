"""Fixtures of the SQLAlchemy connector tests: engines with the test tables, clean registries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from active_data_flow.connectors.sqlalchemy import (
    _db,
    dispose_engines,
    registered_databases,
    unregister_database,
    unregister_models,
)
from tests.integration.sqlalchemy.models import EVENTS, Base


@pytest.fixture(autouse=True)
def clean_registries() -> Iterator[None]:
    """Each test starts with no registered database or model, and cleans up its pools."""
    dispose_engines()  # engines other test folders left behind
    yield
    for name in registered_databases():
        unregister_database(name)
    unregister_models()
    dispose_engines()
    EVENTS.clear()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh database (each of SQLite, PostgreSQL, MariaDB) with the tables."""
    eng = sa.create_engine(db_url)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def server_engine(request: pytest.FixtureRequest, make_database: Any) -> Iterator[sa.Engine]:
    """An engine on a fresh PostgreSQL or MariaDB database with the tables (for behaviour
    SQLite does not have, such as enforced column lengths)."""
    eng = sa.create_engine(make_database(request.param))
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh SQLite database with the tables."""
    eng = sa.create_engine(sqlite_url)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def url_of(engine: sa.Engine) -> str:
    """The engine's URL as a string connectors accept (password included)."""
    return engine.url.render_as_string(hide_password=False)


def rows(engine: sa.Engine, model: Any, *columns: str) -> list[tuple[Any, ...]]:
    """Every row of ``model``'s table (the given columns, or all), in primary-key order."""
    table = model.__table__
    cols = [table.c[c] for c in columns] if columns else list(table.c)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*cols).order_by(*table.primary_key))]


def insert(engine: sa.Engine, model: Any, records: list[dict[str, Any]]) -> None:
    """Insert ``records`` (keyed by attribute name) into ``model``'s table directly."""
    with Session(engine) as session, session.begin():
        session.execute(sa.insert(model), records)


def checked_out(url: str) -> int:
    """Connections of the connectors' pool for ``url`` that are not back in the pool."""
    db = _db.cached_database(url)
    return 0 if db is None else db.engine.pool.checkedout()  # type: ignore[attr-defined]
