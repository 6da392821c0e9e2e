"""``adf.toml`` tables: ``[celery] broker_url`` is exported like the top-level settings (the
environment wins); mistakes in the table are one line naming the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from active_data_flow.cli.config import load_project_config
from active_data_flow.errors import ConfigurationError

BROKER = "ADF_CELERY_BROKER_URL"


@pytest.fixture
def toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(BROKER, raising=False)
    for name in ("ADF_DATABASE_URL", "ADF_FLOWS", "ADF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "adf.toml"


def test_the_celery_broker_is_set_in_adf_toml(toml: Path, monkeypatch: pytest.MonkeyPatch,
                                              ) -> None:
    toml.write_text('database_url = "sqlite:///x.db"\n\n[celery]\n'
                    'broker_url = "redis://broker:6379/0"\n')
    load_project_config(toml)
    assert os.environ[BROKER] == "redis://broker:6379/0"


def test_the_environment_wins(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml.write_text('[celery]\nbroker_url = "redis://broker:6379/0"\n')
    monkeypatch.setenv(BROKER, "amqp://rabbit//")
    load_project_config(toml)
    assert os.environ[BROKER] == "amqp://rabbit//"


@pytest.mark.parametrize(("text", "message"), [
    ('[celery]\nresult_backend = "redis://x"\n',
     "[celery] result_backend: the Celery runtime keeps no task results"),
    ('[celery]\nbroker = "redis://x"\n', "unknown setting 'broker' in [celery]"),
    ('[celery]\nbroker_url = 6379\n', "setting [celery] broker_url must be a string"),
    ('celery = "redis://x"\n', "'celery' must be a table ([celery])"),
])
def test_mistakes_in_the_table_are_named(toml: Path, text: str, message: str) -> None:
    toml.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_project_config(toml)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
