"""Shared fixtures: real services, fresh databases, and the skip-or-fail rule.

Tests that need a server ask for its fixture. When the server is not reachable the test
skips with a message, unless ``ADF_REQUIRE_SERVICES=1`` (set by ``.ci/run`` and by
``python3 dev.py test`` under ``CI=true``): then it fails, so CI cannot pass by skipping.

Database fixtures hand out a *fresh, empty database per test* (PostgreSQL and MariaDB:
``CREATE DATABASE adf_t_<random>``, dropped afterwards; SQLite: a file in ``tmp_path``), so
tests never see each other's tables. ``db_url`` is parametrised over all three.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from active_data_flow.connectors.memory import MemorySink
from active_data_flow.registry import allow_untrusted_connectors

# The suite plays the application: its stored flows use the test connectors (memory, the
# faulty sink, Celery's range source), which are not safe for specs from the web. Tests of
# the refusal itself ask for ``strict_untrusted``; served engines get ADF_UNTRUSTED_CONNECTORS.
TEST_CONNECTORS = ("memory", "faulty", "range", "counting_sink", "counting_source",
                   "test_counted", "test_table", "test_table_failing", "test_table_pausing",
                   "test_tally")
allow_untrusted_connectors(*TEST_CONNECTORS)
# ...and in the processes the tests start (workers, harnesses, served engines).
os.environ.setdefault("ADF_UNTRUSTED_CONNECTORS", ",".join(TEST_CONNECTORS))

REQUIRE = os.environ.get("ADF_REQUIRE_SERVICES", "").lower() in ("1", "true", "yes")

PG_HOST = os.environ.get("ADF_TEST_PG", "127.0.0.1:5432")
MARIADB_HOST = os.environ.get("ADF_TEST_MARIADB", "127.0.0.1:3306")
REDIS_HOST = os.environ.get("ADF_TEST_REDIS", "127.0.0.1:6379")
RABBITMQ_HOST = os.environ.get("ADF_TEST_RABBITMQ", "127.0.0.1:5672")

DATABASES = ("sqlite", "postgresql", "mariadb")


def reachable(hostport: str, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds."""
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def need(service: str, hostport: str | None = None, *, available: bool | None = None) -> None:
    """Skip (locally) or fail (CI) the current test when ``service`` is not available."""
    ok = available if available is not None else reachable(hostport or "")
    if ok:
        return
    message = f"{service} is not available" + (f" at {hostport}" if hostport else "")
    if REQUIRE:
        pytest.fail(f"{message} (required: ADF_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``stress`` tests (long race reproducers) run only when asked for: ``-m stress``."""
    if "stress" in (config.option.markexpr or ""):
        return
    selected = [item for item in items if not item.get_closest_marker("stress")]
    if len(selected) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in selected])
        items[:] = selected


# -- databases ------------------------------------------------------------------------
def _server_url(kind: str, database: str) -> str:
    if kind == "postgresql":
        return f"postgresql+psycopg://postgres@{PG_HOST}/{database}"
    return f"mysql+pymysql://root@{MARIADB_HOST}/{database}?charset=utf8mb4"


def _admin(kind: str, statement: str) -> None:
    import sqlalchemy as sa

    url = _server_url(kind, "test")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def create_database(kind: str, tmp_path: Path) -> str:
    """Create a fresh empty database of ``kind`` and return its SQLAlchemy URL."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'adf-{uuid.uuid4().hex[:8]}.sqlite3'}"
    need(kind, PG_HOST if kind == "postgresql" else MARIADB_HOST)
    name = f"adf_t_{uuid.uuid4().hex[:12]}"
    _admin(kind, f"CREATE DATABASE {name}")
    return _server_url(kind, name)


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (terminating its sessions)."""
    if url.startswith("sqlite"):
        return
    kind = "postgresql" if url.startswith("postgresql") else "mariadb"
    name = url.rsplit("/", 1)[1].split("?")[0]
    if kind == "postgresql":
        _admin(kind, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        _admin(kind, f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def make_database(tmp_path: Path) -> Iterator[object]:
    """Factory: ``make_database("postgresql")`` -> URL of a fresh database, dropped after."""
    made: list[str] = []

    def make(kind: str) -> str:
        url = create_database(kind, tmp_path)
        made.append(url)
        return url

    yield make
    for url in made:
        drop_database(url)


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, make_database: object) -> str:
    """A fresh database on each of SQLite, PostgreSQL and MariaDB."""
    return make_database(request.param)  # type: ignore[operator, no-any-return]


@pytest.fixture
def sqlite_url(make_database: object) -> str:
    """A fresh SQLite database file."""
    return make_database("sqlite")  # type: ignore[operator, no-any-return]


@pytest.fixture
def postgres_url(make_database: object) -> str:
    """A fresh PostgreSQL database."""
    return make_database("postgresql")  # type: ignore[operator, no-any-return]


@pytest.fixture
def mariadb_url(make_database: object) -> str:
    """A fresh MariaDB database."""
    return make_database("mariadb")  # type: ignore[operator, no-any-return]


# -- brokers and browser --------------------------------------------------------------
@pytest.fixture
def redis_url() -> str:
    """URL of the local Redis (a database number of its own would be chosen per test)."""
    need("Redis", REDIS_HOST)
    return f"redis://{REDIS_HOST}/0"


@pytest.fixture
def rabbitmq_url() -> str:
    """URL of the local RabbitMQ."""
    need("RabbitMQ", RABBITMQ_HOST)
    return f"amqp://guest:guest@{RABBITMQ_HOST}//"


@pytest.fixture
def chromium_path() -> str:
    """Path of the system Chromium (Debian package ``chromium``)."""
    path = os.environ.get("ADF_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser"
    )
    need("Chromium (apt-get install chromium chromium-driver)", available=bool(path))
    assert path is not None
    return path


# -- untrusted specs ------------------------------------------------------------------
@pytest.fixture
def strict_untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Untrusted specs get only the connectors marked safe for them, as in production."""
    from active_data_flow import registry

    monkeypatch.setattr(registry, "_untrusted_allowed", set())
    monkeypatch.delenv("ADF_UNTRUSTED_CONNECTORS", raising=False)


# -- in-memory sinks ------------------------------------------------------------------
@pytest.fixture
def memory_sink() -> Iterator[MemorySink]:
    """A memory sink with a unique name, emptied afterwards."""
    sink = MemorySink()
    yield sink
    sink.clear()
