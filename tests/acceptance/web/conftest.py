"""Fixtures of the web engine's acceptance tests: ``adf serve`` as a subprocess.

``served`` starts ``adf serve`` on a free port of 127.0.0.1 with a fresh SQLite store (what
the browser, schemathesis and the load script talk to); :func:`serve` starts one with other
options. The credentials and helpers are the integration tests' (tests/integration/web).
"""

from __future__ import annotations

import os
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

from tests.integration.web.conftest import PASSWORD, TOKEN, USER


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
                "PYTHONUNBUFFERED": "1", "ADF_UNTRUSTED_CONNECTORS": "memory", **(env or {})}
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
