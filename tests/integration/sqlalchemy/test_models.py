"""Resolving `model` and `database`: import strings in code, only registered names from outside."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from active_data_flow import Sink, Source
from active_data_flow.connectors.sqlalchemy import (
    SqlAlchemySink,
    SqlAlchemySource,
    register_database,
    register_models,
)
from active_data_flow.errors import ConfigurationError
from active_data_flow.registry import untrusted_specs
from tests.integration.sqlalchemy.models import Base, Contact, Namespace, Person

MODELS = "tests.integration.sqlalchemy.models"
T0 = dt.datetime(2024, 3, 1, 12, 0)


@pytest.mark.parametrize(
    "name",
    [f"{MODELS}:Person", f"{MODELS}.Person"],
)
def test_code_may_name_a_model_by_import_string(name: str) -> None:
    assert SqlAlchemySource(model=name, database="sqlite://").config.model is Person


def test_nested_models_resolve_by_qualified_name() -> None:
    source = SqlAlchemySource(model=f"{MODELS}:Namespace.Tag", database="sqlite://")
    assert source.config.model is Namespace.Tag
    assert SqlAlchemySource(model=f"{MODELS}.Namespace.Tag").config.model is Namespace.Tag


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (f"{MODELS}:Nobody", f"'Nobody' in module '{MODELS}' \\(no such attribute\\)"),
        (f"{MODELS}.Nobody",
         f"tried '{MODELS}' attribute|'Nobody' in module '{MODELS}' \\(no such attribute\\)"),
        ("no_such_pkg.models.User", "module 'no_such_pkg.models' \\(not found\\).*"
                                    "module 'no_such_pkg' \\(not found\\)"),
        ("User", "not a registered model, and not an import string"),
        (f"{MODELS}:NotAModel", "not a mapped SQLAlchemy model"),
        ("", "must be a mapped class or an import string"),
    ],
)
def test_an_unknown_model_says_what_was_tried(name: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as err:
        SqlAlchemySink(model=name)
    assert err.value.option == "model"


def test_a_class_that_is_not_mapped_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a mapped SQLAlchemy model"):
        SqlAlchemySource(model=dict)


def test_to_dict_names_the_model_by_import_string_and_from_dict_rebuilds_it() -> None:
    source = SqlAlchemySource(model=Person, database="sqlite:///x.db", where={"name": "Ada"})
    spec = source.to_dict()
    assert spec == {
        "type": "sqlalchemy",
        "config": {"model": f"{MODELS}:Person", "database": "sqlite:///x.db",
                   "where": {"name": "Ada"}},
    }
    rebuilt = Source.from_dict(spec)
    assert isinstance(rebuilt, SqlAlchemySource)
    assert rebuilt.config.model is Person
    # Values that are not JSON (a datetime filter, a timedelta lag) come back as they were.
    timed = SqlAlchemySource(model=Person, cursor_column="updated_at",
                             lag=dt.timedelta(seconds=90), where={"updated_at": T0})
    timed_spec = timed.to_dict()
    assert timed_spec["config"]["lag"] == "PT1M30S"
    again = Source.from_dict(json.loads(json.dumps(timed_spec)))
    assert again.config.lag == dt.timedelta(seconds=90)  # type: ignore[attr-defined]
    params = again._plan.count_statement().compile().params  # type: ignore[attr-defined]
    assert list(params.values()) == [T0]  # the ISO string became a datetime again
    sink = Sink.from_dict(SqlAlchemySink(model=Contact, upsert=True).to_dict())
    assert isinstance(sink, SqlAlchemySink)
    assert sink.config.upsert


def test_a_registered_engine_is_stored_by_its_name() -> None:
    engine = register_database("warehouse", "sqlite://")
    spec = SqlAlchemySource(model=Person, database=engine).to_dict()
    assert spec["config"]["database"] == "warehouse"
    # So is the URL of a registered database: stored specs may only name registered ones.
    assert SqlAlchemySource(model=Person, database="sqlite://").to_dict()["config"][
        "database"] == "warehouse"


def test_an_unregistered_engine_cannot_be_stored_in_a_spec() -> None:
    source = SqlAlchemySource(model=Person, database=sa.create_engine("sqlite://"))
    with pytest.raises(ConfigurationError, match="register it with register_database"):
        source.to_dict()


def test_untrusted_specs_may_name_registered_models_by_name_or_import_string() -> None:
    register_models(Base)
    register_models(people=Person)
    register_database("main", "sqlite://")
    with untrusted_specs():
        for name in ("Person", "people", f"{MODELS}:Person", f"{MODELS}.Person"):
            spec = {"type": "sqlalchemy", "config": {"model": name, "database": "main"}}
            assert Source.from_dict(spec).config.model is Person  # type: ignore[attr-defined]


def test_untrusted_specs_refuse_unregistered_models_and_raw_urls() -> None:
    register_models(Contact)
    register_database("main", "sqlite://")
    with untrusted_specs():
        with pytest.raises(ConfigurationError, match=r"'Person' is not a registered model.*"
                                                     r"registered: .*Contact") as err:
            SqlAlchemySource(model="Person", database="main")
        assert err.value.option == "model"
        with pytest.raises(ConfigurationError, match="not a registered database") as err:
            SqlAlchemySink(model="Contact", database="postgresql://u:hunter2@evil/db")
        assert err.value.option == "database"
        assert "hunter2" not in str(err.value)


def test_untrusted_specs_import_nothing() -> None:
    # In a fresh interpreter, so the module cannot have been imported by another test.
    code = textwrap.dedent("""
        import sys
        from active_data_flow import Source
        from active_data_flow.errors import ConfigurationError
        from active_data_flow.registry import untrusted_specs
        spec = {"type": "sqlalchemy",
                 "config": {"model": "tests.integration.sqlalchemy.unregistered:Secret"}}
        with untrusted_specs():
            try:
                Source.from_dict(spec)
            except ConfigurationError as exc:
                print("refused:", exc.option)
        print("imported:", "tests.integration.sqlalchemy.unregistered" in sys.modules)
        Source.from_dict(spec)  # the application's own code may import it
        print("imported:", "tests.integration.sqlalchemy.unregistered" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:3] == ["refused: model", "imported: False", "imported: True"]


def test_ambiguous_class_names_ask_for_the_import_string() -> None:
    other = sa.orm.registry()

    class Person(other.generate_base()):  # type: ignore[misc]  # same name, other module path
        __tablename__ = "people_elsewhere"
        id = sa.Column(sa.Integer, primary_key=True)

    register_models(Base, other)
    with untrusted_specs(), pytest.raises(ConfigurationError, match="ambiguous"):
        SqlAlchemySource(model="Person")


def test_registering_something_that_is_not_a_model_fails() -> None:
    with pytest.raises(ConfigurationError, match="declarative bases, registries or mapped"):
        register_models(object)


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        ({"where": {"nme": "x"}}, "where",
         r"'nme' is not a column of Person \(did you mean 'name'\?\)"),
        ({"select": ["id", "age"]}, "select", "'age' is not a column"),
        ({"order_by": "-nope"}, "order_by", "'nope' is not a column"),
        ({"order_by": "name sideways"}, "order_by", "must be 'column'"),
        ({"cursor_column": "name"}, "cursor_column", "column 'name' is nullable"),
        ({"cursor_column": "id", "order_by": "-id"}, "order_by", "conflicts with 'cursor_column'"),
        ({"includes": ["friends"]}, "includes", "Person has no relationship 'friends'"),
        ({"lag": 5, "cursor_column": "email"}, "lag", "does not fit the cursor column 'email'"),
        ({"lag": -1}, "lag", "must not be negative"),
        ({"where": {"updated_at": "yesterday"}}, "where", "not a valid datetime"),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"database": "postgresql://u:hunter2@host:port/db"}, "database",
         "not a valid SQLAlchemy URL"),
    ],
)
def test_source_options_are_checked_against_the_model(
    options: dict[str, object], option: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as err:
        SqlAlchemySource(model=Person, **options)
    assert err.value.option == option
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        ({"unique_by": "email"}, "unique_by", "needs upsert=true"),
        ({"upsert": True, "unique_by": "name"}, "unique_by", "not a unique key of Contact"),
        ({"upsert": True, "update_only": ["nickname"]}, "update_only", "'nickname' is not"),
        ({"transaction": False, "transaction_batch_size": 10}, "transaction_batch_size",
         "needs transaction=true"),
        ({"batch_size": -5}, "batch_size", "greater than or equal to 1"),
        ({"upsurt": True}, "upsurt", "unknown option 'upsurt'"),
    ],
)
def test_sink_options_are_checked_against_the_model(
    options: dict[str, object], option: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as err:
        SqlAlchemySink(model=Contact, **options)
    assert err.value.option == option


def test_construction_never_connects() -> None:
    # Nothing listens there; building (and cloning, as flows do per run) must not notice.
    url = "postgresql+psycopg://user:secret@127.0.0.1:1/nowhere"
    SqlAlchemySource(model=Person, database=url).clone()
    SqlAlchemySink(model=Contact, database=url).clone().close()
