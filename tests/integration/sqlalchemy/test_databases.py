"""Named databases as the connectors see them: a model's database, the default, unknown names.

The engine cache, engine set-up and retries are tested in tests/unit/connectors/sqlalchemy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from active_data_flow.connectors.sqlalchemy import (
    SqlAlchemySink,
    SqlAlchemySource,
    register_database,
    register_models,
)
from active_data_flow.errors import ConfigurationError
from tests.integration.sqlalchemy.conftest import insert, rows
from tests.integration.sqlalchemy.models import Base, Contact, Person
from tests.integration.sqlalchemy.test_source import people


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
