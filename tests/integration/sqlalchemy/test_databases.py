"""Named databases, the URL -> engine cache, and what the connectors do to engines they create."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from active_data_flow.connectors.sqlalchemy import (
    SqlAlchemySink,
    SqlAlchemySource,
    _engines,
    dispose_engines,
    register_database,
    register_models,
    registered_databases,
)
from active_data_flow.errors import ConfigurationError
from tests.integration.sqlalchemy.conftest import insert, rows
from tests.integration.sqlalchemy.models import Base, Contact, Person
from tests.integration.sqlalchemy.test_source import people


def journal_mode(path: Path) -> str:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        mode = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
    engine.dispose()
    return mode


def test_connectors_share_one_engine_per_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    Base.metadata.create_all(sa.create_engine(url))
    SqlAlchemySink(model=Contact, database=url).close()
    list(SqlAlchemySource(model=Contact, database=url).each())
    SqlAlchemySink(model=Contact, database=url).close()
    assert len(_engines._by_url) == 1


def test_sqlite_files_opened_from_urls_use_wal_and_engines_passed_in_are_left_alone(
    tmp_path: Path,
) -> None:
    for name in ("url", "registered", "opted_out", "passed"):
        Base.metadata.create_all(sa.create_engine(f"sqlite:///{tmp_path / name}.db"))
    list(SqlAlchemySource(model=Person, database=f"sqlite:///{tmp_path / 'url.db'}").each())
    register_database("reg", f"sqlite:///{tmp_path / 'registered.db'}")
    register_database("out", f"sqlite:///{tmp_path / 'opted_out.db'}", sqlite_wal=False)
    passed = sa.create_engine(f"sqlite:///{tmp_path / 'passed.db'}")
    for database in ("reg", "out", passed):
        list(SqlAlchemySource(model=Person, database=database).each())
    assert [journal_mode(tmp_path / f"{n}.db") for n in
            ("url", "registered", "opted_out", "passed")] == ["wal", "wal", "delete", "delete"]


def test_models_registered_with_a_database_use_it_by_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    insert(engine, Person, people(3))
    with pytest.raises(ConfigurationError, match=r"no database given.*register_database"):
        list(SqlAlchemySource(model=Person).each())
    register_database("shop", url)
    register_models(Base, database="shop")
    assert len(list(SqlAlchemySource(model=Person).each())) == 3
    register_database("default", f"sqlite:///{tmp_path / 'other.db'}")
    Base.metadata.create_all(sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}"))
    with SqlAlchemySink(model=Contact) as sink:  # the model's database wins over "default"
        sink.write({"id": 1, "email": "a@b.c"})
    assert rows(engine, Contact, "id") == [(1,)]


def test_an_unknown_database_name_lists_the_registered_ones() -> None:
    register_database("main", "sqlite://")
    with pytest.raises(ConfigurationError, match=r"database 'mian' is not registered "
                                                 r"\(registered: main\)") as err:
        list(SqlAlchemySource(model=Person, database="mian").each())
    assert err.value.option == "database"


def test_registering_again_replaces_and_disposes_the_old_engine(tmp_path: Path) -> None:
    first = register_database("main", f"sqlite:///{tmp_path / 'one.db'}")
    with first.connect():
        pass
    second = register_database("main", f"sqlite:///{tmp_path / 'two.db'}")
    assert first is not second
    assert first.pool.checkedin() == 0  # type: ignore[attr-defined]
    assert registered_databases() == ["main"]
    with pytest.raises(ConfigurationError, match="apply only when registering a URL"):
        register_database("x", second, pool_size=3)
    with pytest.raises(ConfigurationError, match="retries must be >= 1"):
        register_database("x", "sqlite://", retries=0)


def test_a_forked_child_opens_its_own_connections(sqlite_engine: sa.Engine) -> None:
    url = sqlite_engine.url.render_as_string(hide_password=False)
    engine = register_database("main", url)
    list(SqlAlchemySource(model=Person, database="main").each())
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # the child: the parent's pooled connection must not be reused here
        ok = engine.pool.checkedin() == 0  # type: ignore[attr-defined]
        ok = ok and list(SqlAlchemySource(model=Person, database="main").each()) == []
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    dispose_engines()
    assert engine.pool.checkedin() == 0  # type: ignore[attr-defined]
