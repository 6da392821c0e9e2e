"""``POST /inbox/{flow}`` through a running server, on SQLite, PostgreSQL and MariaDB: the
flow's token, body limits, schema errors naming the field, JSON-RPC, idempotent retries; and
a server killed (SIGKILL) between the commit and its answer while clients retry: every
record stored once, none lost."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from active_data_flow.runtimes.heartbeat import FlowStore
from active_data_flow.runtimes.heartbeat.engine.inbox import hash_token
from tests.acceptance.web.conftest import Served, free_port, serve
from tests.conftest import DATABASES

TOKEN = "inbox-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[3]


def inbox_flow(name: str, **source: Any) -> dict[str, Any]:
    return {"name": name,
            "source": {"type": "http_inbox",
                       "config": {"token_sha256": hash_token(TOKEN), **source}},
            "sink": {"type": "memory", "config": {"name": name}}}


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, make_database: Callable[[str], str]) -> str:
    """A fresh, migrated store database holding the flows ``orders`` (schema: id int,
    total float) and ``plain`` (no inbox)."""
    url = make_database(request.param)
    with FlowStore(url, auto_upgrade=True) as store:
        store.create_flow(inbox_flow("orders", schema={"id": "int", "total": "float"}))
        store.create_flow({"name": "plain", "source": {"type": "memory", "config": {}},
                           "sink": {"type": "memory", "config": {"name": "plain"}}})
    return url


@pytest.fixture
def engine(database: str, tmp_path: Path) -> Iterator[Served]:
    yield from serve(database, tmp_path, env={"ADF_WEB_MAX_BODY": "4096"})


def stored(url: str, flow: str = "orders") -> list[dict[str, Any]]:
    with FlowStore(url) as store:
        return [e.payload for e in store.inbox.read(flow, None, 100_000)]


def test_pushes_are_authenticated_checked_and_idempotent(engine: Served) -> None:
    with httpx.Client(base_url=engine.url, timeout=30) as client:
        record = {"id": 1, "total": 9.5}
        assert client.post("/inbox/orders", json=record).status_code == 401
        refused = client.post("/inbox/orders", json=record,
                              headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert "token" in refused.json()["error"]
        assert client.post("/inbox/nope", json=record, headers=AUTH).status_code == 401
        assert client.post("/inbox/plain", json=record, headers=AUTH).status_code == 401

        first = client.post("/inbox/orders", json=record,
                            headers={**AUTH, "Idempotency-Key": "req-1"})
        assert first.status_code == 202, first.text
        assert first.json()["accepted"] == 1
        retry = client.post("/inbox/orders", json=record,
                            headers={**AUTH, "Idempotency-Key": "req-1"})
        assert retry.status_code == 202
        assert retry.json() == {"accepted": 0, "duplicates": 1, "last_id": None}

        batch = [{"id": 2, "total": 1.0}, {"id": 3, "total": "lots"}]
        bad = client.post("/inbox/orders", json=batch, headers=AUTH)
        assert bad.status_code == 422, bad.text
        assert bad.json()["option"] == "1.total"
        batch[1]["total"] = 3.0
        good = client.post("/inbox/orders", json=batch, headers={**AUTH, "Idempotency-Key": "b"})
        assert good.status_code == 202
        assert good.json()["accepted"] == 2

        call = {"jsonrpc": "2.0", "id": 7, "method": "push",
                "params": {"record": {"id": 4, "total": 4.0}, "key": "rpc-4"}}
        answer = client.post("/inbox/orders", json=call, headers=AUTH)
        assert answer.status_code == 202
        assert answer.json()["id"] == 7
        assert answer.json()["result"]["accepted"] == 1
        again = client.post("/inbox/orders", json=call, headers=AUTH).json()
        assert again["result"]["duplicates"] == 1
        wrong = client.post("/inbox/orders", headers=AUTH, json={
            "jsonrpc": "2.0", "id": 8, "method": "push_batch",
            "params": {"records": [{"id": "x", "total": 1}]}})
        assert wrong.status_code == 422
        assert wrong.json()["error"]["data"]["field"] == "params.records.0.id"

        big = [{"id": i, "total": 1.0} for i in range(400)]
        assert client.post("/inbox/orders", json=big, headers=AUTH).status_code == 413
        assert client.post("/inbox/orders", content=b"id=1", headers={
            **AUTH, "Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
        assert client.post("/inbox/orders", content=b"{nope", headers={
            **AUTH, "Content-Type": "application/json"}).status_code == 400
    assert sorted(r["id"] for r in stored(engine.database_url)) == [1, 2, 3, 4]


# -- SIGKILL between the commit and the answer ------------------------------------------
CLIENTS = 4
REQUESTS = 15  # per client
PER_REQUEST = 5


class Harness:
    """The engine under uvicorn on one port, restarted after each death."""

    def __init__(self, database: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = database
        self.log = (workdir / "harness.log").open("ab")
        self.process: subprocess.Popen[bytes] | None = None
        self.deaths = 0

    def start(self, kill_after: int) -> None:
        env = {**os.environ, "ADF_DATABASE_URL": self.database,
               "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.acceptance.web.inbox_harness", str(self.port),
             str(kill_after)], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                if self.process.poll() is not None:
                    return  # already killed by the clients' pushes: restarted by the test
            time.sleep(0.1)
        raise AssertionError("the harness did not answer in 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def push_until_accepted(url: str, body: list[dict[str, Any]], key: str) -> int:
    """POST until a 202 (connection refused, reset or cut: the server died; retry)."""
    attempts = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        attempts += 1
        try:
            response = httpx.post(f"{url}/inbox/orders", json=body, timeout=10,
                                  headers={**AUTH, "Idempotency-Key": key})
            if response.status_code == 202:
                return attempts
            assert response.status_code == 503, response.text  # store briefly unavailable
        except httpx.TransportError:
            pass
        time.sleep(0.05 + random.random() * 0.1)
    raise AssertionError(f"request {key} got no 202 in 120 s")


@pytest.mark.slow
def test_sigkill_between_commit_and_answer_loses_and_duplicates_nothing(
        database: str, tmp_path: Path) -> None:
    harness = Harness(database, tmp_path)
    attempts: list[int] = []
    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            for request in range(REQUESTS):
                body = [{"id": (number * REQUESTS + request) * PER_REQUEST + i, "total": 1.0}
                        for i in range(PER_REQUEST)]
                attempts.append(push_until_accepted(harness.url, body, f"c{number}-r{request}"))
        except BaseException as exc:
            errors.append(exc)

    try:
        harness.start(kill_after=random.randint(2, 6))
        threads = [threading.Thread(target=client, args=(n,), daemon=True)
                   for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            assert harness.process is not None
            if harness.process.poll() is not None:  # died after a commit: restart it
                harness.deaths += 1
                harness.start(kill_after=random.randint(2, 6) if harness.deaths < 5 else 0)
            time.sleep(0.05)
        for thread in threads:
            thread.join()
    finally:
        harness.stop()
    assert not errors, errors
    assert harness.deaths >= 3  # the crash point was hit several times
    assert max(attempts) > 1  # some clients got no answer and retried
    ids = sorted(r["id"] for r in stored(database))
    assert ids == list(range(CLIENTS * REQUESTS * PER_REQUEST))  # 0 lost, 0 duplicated
