"""``settings.ACTIVE_DATA_FLOW`` and the flow store's URL built from ``DATABASES``."""

from __future__ import annotations

import pytest
from django.test import override_settings

from active_data_flow.contrib.django import conf
from active_data_flow.errors import ConfigurationError


def test_defaults_and_values() -> None:
    with override_settings(ACTIVE_DATA_FLOW={}):
        assert conf.adf_settings() == conf.AdfSettings()
    with override_settings(ACTIVE_DATA_FLOW={
            "DATABASE": "postgresql", "FLOWS": ["a.flows"], "HEARTBEAT_TOKEN": "t",
            "CELERY_APP": "proj.celery:app", "MODELS": ["testapp.*"]}):
        got = conf.adf_settings()
    assert (got.database, got.flows, got.heartbeat_token, got.celery_app, got.models) == (
        "postgresql", ("a.flows",), "t", "proj.celery:app", ("testapp.*",))


@pytest.mark.parametrize(("value", "option", "text"), [
    ({"DATABSE": "default"}, "DATABSE", "unknown key 'DATABSE'"),
    ({"DATABASE": "nope"}, "DATABASE", "'nope' is not a DATABASES alias"),
    ({"FLOWS": "a.flows"}, "FLOWS", "must be a list of strings"),
])
def test_bad_settings_name_the_key(value: dict[str, object], option: str, text: str) -> None:
    with override_settings(ACTIVE_DATA_FLOW=value), pytest.raises(ConfigurationError) as err:
        conf.adf_settings()
    assert err.value.option == option
    assert text in str(err.value)


def test_urls_follow_the_databases_entries() -> None:
    assert conf.sqlalchemy_url("default").drivername == "sqlite"
    pg = conf.sqlalchemy_url("postgresql")
    assert (pg.drivername, pg.username, pg.database) == (
        "postgresql+psycopg", "postgres", conf.sqlalchemy_url("postgresql").database)
    my = conf.sqlalchemy_url("mariadb")
    assert (my.drivername, my.query["charset"]) == ("mysql+pymysql", "utf8mb4")
    with pytest.raises(ConfigurationError, match="'other' is not a DATABASES alias"):
        conf.sqlalchemy_url("other")


def test_an_in_memory_sqlite_database_is_refused() -> None:
    from django.db import connections

    entry = connections["default"].settings_dict
    saved = entry["NAME"]
    entry["NAME"] = ":memory:"
    try:
        with pytest.raises(ConfigurationError, match="in-memory SQLite"):
            conf.sqlalchemy_url("default")
    finally:
        entry["NAME"] = saved
