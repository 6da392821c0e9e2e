"""Fixtures of the web engine's tests: a real store and a TestClient.

``store`` runs on SQLite and PostgreSQL (a fresh database per test). ``client`` talks to
``create_app(store)`` in process, authenticated with HTTP Basic; ``anonymous`` is the same
app without credentials. (``adf serve`` as a subprocess, for the browser and schemathesis,
is in tests/acceptance/web/conftest.py.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from active_data_flow.catalog import catalog
from active_data_flow.runtimes.heartbeat import FlowStore
from active_data_flow.web import WebSettings, basic_auth, create_app

USER, PASSWORD = "admin", "correct horse battery staple"
TOKEN = "heartbeat-token-0123456789"
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def _fresh_catalog() -> Iterator[None]:
    """No code-defined flows leak between tests."""
    catalog.clear()
    yield
    catalog.clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, make_database: Callable[[str], str]) -> str:
    """A fresh database on SQLite, then on PostgreSQL."""
    return make_database(request.param)


@pytest.fixture
def store(store_url: str) -> Iterator[FlowStore]:
    """A migrated flow store on a fresh database."""
    the_store = FlowStore(store_url, auto_upgrade=True)
    yield the_store
    the_store.close()


def make_app(store: FlowStore, **settings: Any) -> FastAPI:
    """The engine over ``store`` with the test credentials and heartbeat token."""
    return create_app(store, auth=basic_auth(USER, PASSWORD),
                      settings=WebSettings(heartbeat_token=TOKEN, **settings))


@pytest.fixture
def app(store: FlowStore) -> FastAPI:
    return make_app(store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An authenticated client of the app (raises nothing: 5xx come back as responses)."""
    with TestClient(app, raise_server_exceptions=False) as c:
        c.auth = (USER, PASSWORD)
        yield c


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[TestClient]:
    """A client of the same app that sends no credentials."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def csrf_token(client: TestClient, path: str = "/flows/new") -> str:
    """Load a page with a form and return its CSRF token (the cookie is kept by the client)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert found, "the page has no CSRF token"
    return found.group(1)


def memory_spec(name: str, records: int = 3, **extra: Any) -> dict[str, Any]:
    """A flow spec copying ``records`` in-memory records to a memory sink."""
    return {"name": name,
            "source": {"type": "memory", "config": {"records": [{"n": i} for i in
                                                                 range(records)]}},
            "sink": {"type": "memory", "config": {"name": f"out-{name}"}}, **extra}


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.1)
