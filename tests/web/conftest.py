"""Fixtures of the web engine's tests: a real store, a TestClient, a served ``adf serve``.

``store`` runs on SQLite and PostgreSQL (a fresh database per test). ``client`` talks to
``create_app(store)`` in process, authenticated with HTTP Basic; ``anonymous`` is the same
app without credentials. ``served`` starts ``adf serve`` as a subprocess on a free port of
127.0.0.1 (what the browser, schemathesis and the load script talk to).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from active_data_flow.runtimes.heartbeat import FlowStore, catalog
from active_data_flow.web import WebSettings, basic_auth, create_app

USER, PASSWORD = "admin", "correct horse battery staple"
TOKEN = "heartbeat-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]
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


# -- a served engine ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """An ``adf serve`` subprocess."""

    url: str
    database_url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, auth: bool = True) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(USER, PASSWORD) if auth else None,
                            timeout=30)

    def beat(self) -> dict[str, Any]:
        """Call POST /heartbeat like cron would."""
        with self.client(auth=False) as c:
            response = c.post("/heartbeat", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def serve(database_url: str, workdir: Path, *args: str, env: dict[str, str] | None = None,
          ) -> Generator[Served, None, None]:
    """Run ``adf serve`` until the generator is closed; yields once it answers /health."""
    port = free_port()
    log = workdir / "serve.log"
    full_env = {**os.environ, "ADF_WEB_USER": USER, "ADF_WEB_PASSWORD": PASSWORD,
                "ADF_HEARTBEAT_TOKEN": TOKEN, "ADF_DATABASE_URL": database_url,
                "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "adf"), "serve", "--port", str(port),
             "--log-level", "warning", *args],
            cwd=workdir, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", database_url, workdir, process, log, full_env)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"adf serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{served.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"adf serve did not answer in 30 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def served(tmp_path: Path, make_database: Callable[[str], str]) -> Iterator[Served]:
    """``adf serve`` on a fresh SQLite store, with a working directory of its own."""
    yield from serve(make_database("sqlite"), tmp_path)
