"""The JSON API over the real flow store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from active_data_flow import DataFlow
from active_data_flow.message import Message
from active_data_flow.runtimes.heartbeat import FlowStore, register_flow
from tests.integration.web.conftest import TOKEN, memory_spec, wait_for

# The authenticated test client sends Basic credentials; the token rides in its own header.
BEAT = {"X-ADF-Heartbeat-Token": TOKEN}


def beat(client: TestClient) -> Any:
    """POST /heartbeat with the token."""
    return client.post("/heartbeat", headers=BEAT)


def flow_count(client: TestClient) -> int:
    return int(client.get("/api/flows").json()["total"])


def run_to_end(client: TestClient, name: str) -> dict[str, Any]:
    """Trigger ``name``, beat, and wait until its run has ended."""
    run = client.post(f"/api/flows/{name}/trigger").json()
    assert beat(client).status_code == 200
    return wait_for(  # type: ignore[no-any-return]
        lambda: (r := client.get(f"/api/runs/{run['id']}").json())["ended_at"] and r,
        what=f"run {run['id']} of {name} to end")


# -- create, read, list ------------------------------------------------------------------
def test_a_created_flow_can_be_read_back_and_listed(client: TestClient) -> None:
    created = client.post("/api/flows", json=memory_spec("copy_numbers"))
    assert created.status_code == 201, created.text
    flow = created.json()
    assert flow["name"] == "copy_numbers"
    assert flow["status"] == "active"
    assert flow["origin"] == "spec"
    assert flow["sinks"] == [{"type": "memory", "config": {"name": "out-copy_numbers"}}]
    assert client.get("/api/flows/copy_numbers").json() == flow
    listed = client.get("/api/flows").json()
    assert listed["total"] == 1
    assert [f["name"] for f in listed["items"]] == ["copy_numbers"]


def test_an_unknown_connector_type_is_a_422_naming_it_and_nothing_is_stored(
    client: TestClient,
) -> None:
    spec = memory_spec("bad_type")
    spec["source"] = {"type": "no_such_source", "config": {}}
    response = client.post("/api/flows", json=spec)
    assert response.status_code == 422
    body = response.json()
    assert "no_such_source" in body["error"]
    assert body["option"] == "type"
    assert body["request_id"]
    assert flow_count(client) == 0


def test_a_bad_connector_option_is_a_422_naming_the_option(client: TestClient) -> None:
    spec = memory_spec("bad_option")
    spec["sink"] = {"type": "memory", "config": {"nmae": "typo"}}
    response = client.post("/api/flows", json=spec)
    assert response.status_code == 422
    assert response.json()["option"] == "nmae"
    assert "nmae" in response.json()["error"]
    assert flow_count(client) == 0


@pytest.mark.parametrize(("body", "option"), [
    ({"name": "x", "sink": {"type": "memory"}}, "source"),
    ({**memory_spec("x"), "surprise": 1}, "surprise"),
    ({**memory_spec("x"), "batch_size": 0}, "batch_size"),
    ({**memory_spec("x"), "name": "has space"}, "name"),
    ({**memory_spec("x"), "on_error": "explode"}, "on_error"),
])
def test_malformed_specs_are_422s_naming_the_field(
    client: TestClient, body: dict[str, Any], option: str,
) -> None:
    response = client.post("/api/flows", json=body)
    assert response.status_code == 422
    assert response.json()["option"] == option, response.json()
    assert flow_count(client) == 0


def test_a_taken_name_is_a_409(client: TestClient) -> None:
    assert client.post("/api/flows", json=memory_spec("twice")).status_code == 201
    again = client.post("/api/flows", json=memory_spec("twice"))
    assert again.status_code == 409
    assert "twice" in again.json()["error"]


def test_listing_filters_by_status_and_name_and_paginates(client: TestClient) -> None:
    for i in range(7):
        client.post("/api/flows", json=memory_spec(f"orders_{i}"))
    client.post("/api/flows", json=memory_spec("users"))
    client.post("/api/flows/orders_3/pause")
    page = client.get("/api/flows", params={"search": "ORDERS", "limit": 3, "offset": 3}).json()
    assert page["total"] == 7
    assert [f["name"] for f in page["items"]] == ["orders_3", "orders_4", "orders_5"]
    paused = client.get("/api/flows", params={"status": "paused"}).json()
    assert [f["name"] for f in paused["items"]] == ["orders_3"]
    assert client.get("/api/flows", params={"limit": 0}).status_code == 422


def test_unknown_flows_and_runs_are_404s(client: TestClient) -> None:
    for method, path in [("GET", "/api/flows/ghost"), ("PATCH", "/api/flows/ghost"),
                         ("DELETE", "/api/flows/ghost"), ("POST", "/api/flows/ghost/trigger"),
                         ("POST", "/api/flows/ghost/pause"), ("GET", "/api/flows/ghost/runs"),
                         ("GET", "/api/flows/ghost/dead-letters"), ("GET", "/api/runs/999")]:
        response = client.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]


# -- running -----------------------------------------------------------------------------
def test_trigger_then_heartbeat_runs_the_flow_and_records_it(client: TestClient) -> None:
    client.post("/api/flows", json=memory_spec("copy", records=5))
    triggered = client.post("/api/flows/copy/trigger")
    assert triggered.status_code == 202
    assert triggered.json()["status"] == "pending"
    summary = beat(client).json()
    assert summary["claimed"] == [triggered.json()["id"]]
    assert summary["dispatched"] == [triggered.json()["id"]]
    run = wait_for(lambda: (r := client.get(f"/api/runs/{summary['claimed'][0]}").json())
                   ["ended_at"] and r, what="the run to end")
    assert run["status"] == "succeeded"
    assert (run["read"], run["written"], run["failed"]) == (5, 5, 0)
    assert run["cursor_end"] == 4
    flow = client.get("/api/flows/copy").json()
    assert flow["cursor"] == 4
    assert flow["last_run_status"] == "succeeded"
    runs = client.get("/api/flows/copy/runs").json()
    assert [r["id"] for r in runs["items"]] == [run["id"]]
    assert client.get("/api/runs", params={"flow": "copy", "status": "failed"}).json()[
        "total"] == 0
    stats = client.get("/api/flows/copy/stats").json()
    assert (stats["runs"], stats["succeeded"], stats["read"]) == (1, 1, 5)


def test_pause_cancels_the_pending_run_and_resume_schedules_again(client: TestClient) -> None:
    client.post("/api/flows", json=memory_spec("ticker", runtime={
        "type": "heartbeat", "config": {"interval": 3600}}))
    assert client.get("/api/flows/ticker").json()["next_run_at"] is not None
    paused = client.post("/api/flows/ticker/pause").json()
    assert paused["status"] == "paused"
    assert paused["next_run_at"] is None
    assert client.get("/api/runs", params={"flow": "ticker", "status": "cancelled"}).json()[
        "total"] == 1
    resumed = client.post("/api/flows/ticker/resume").json()
    assert resumed["status"] == "active"
    assert resumed["next_run_at"] is not None


def test_reset_cursor_sets_where_the_next_run_resumes(client: TestClient) -> None:
    client.post("/api/flows", json=memory_spec("resumable", records=4))
    assert run_to_end(client, "resumable")["cursor_end"] == 3
    assert client.post("/api/flows/resumable/cursor/reset", json={"cursor": 1}).json()[
        "cursor"] == 1
    again = run_to_end(client, "resumable")
    assert (again["cursor_start"], again["read"]) == (1, 2)
    assert client.post("/api/flows/resumable/cursor/reset").json()["cursor"] is None


def test_patch_changes_a_spec_flow_and_revalidates_it(client: TestClient) -> None:
    client.post("/api/flows", json=memory_spec("editable"))
    changed = client.patch("/api/flows/editable", json={
        "runtime": {"type": "heartbeat", "config": {"interval": 60}}, "batch_size": 10})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["schedule"], changed.json()["batch_size"]) == (60, 10)
    refused = client.patch("/api/flows/editable", json={"sink": {"type": "nope"}})
    assert refused.status_code == 422
    assert client.get("/api/flows/editable").json()["sinks"][0]["type"] == "memory"


def test_delete_removes_the_flow_and_its_runs(client: TestClient) -> None:
    client.post("/api/flows", json=memory_spec("doomed"))
    run_to_end(client, "doomed")
    assert client.delete("/api/flows/doomed").status_code == 204
    assert client.get("/api/flows/doomed").status_code == 404
    assert client.get("/api/runs").json()["total"] == 0


def test_connector_types_are_listed_for_forms_and_clients(client: TestClient) -> None:
    types = client.get("/api/connectors").json()
    assert {"memory", "jsonl", "csv"} <= set(types["sources"])
    assert {"memory", "jsonl", "csv", "dead_letters"} <= set(types["sinks"])
    assert {"inline", "heartbeat"} <= set(types["runtimes"])


# -- dead letters ------------------------------------------------------------------------
_REJECT = {"enabled": True}


@register_flow
class RejectOdd(DataFlow):
    """Its transform refuses odd numbers while ``_REJECT`` is on (a code flow spec flows
    borrow with ``"transform": "reject_odd"``)."""

    source = {"type": "memory", "config": {}}
    sink = {"type": "memory", "config": {"name": "reject-odd"}}

    def transform(self, message: Message) -> dict[str, Any]:
        if _REJECT["enabled"] and message["n"] % 2:
            raise ValueError(f"odd number {message['n']}")
        return dict(message.data)


@pytest.fixture
def rejecting() -> Iterator[None]:
    from active_data_flow.catalog import catalog

    catalog.register(RejectOdd)
    _REJECT["enabled"] = True
    yield
    _REJECT["enabled"] = True


def test_dead_letters_are_listed_and_replayed(client: TestClient, rejecting: None) -> None:
    spec = memory_spec("picky", records=4, transform="reject_odd", on_error="dead_letter",
                       dead_letter_sink={"type": "dead_letters", "config": {}})
    assert client.post("/api/flows", json=spec).status_code == 201, spec
    run = run_to_end(client, "picky")
    assert (run["status"], run["written"], run["failed"]) == ("succeeded", 2, 2)
    letters = client.get("/api/flows/picky/dead-letters").json()
    assert letters["total"] == 2
    assert {d["message"]["n"] for d in letters["items"]} == {1, 3}
    assert all("odd number" in d["error"] for d in letters["items"])
    first = letters["items"][0]["id"]
    _REJECT["enabled"] = False
    report = client.post("/api/flows/picky/dead-letters/replay", json={"ids": [first]}).json()
    assert (report["replayed"], report["failed"], report["written"]) == ([first], {}, 1)
    assert client.get("/api/flows/picky/dead-letters").json()["total"] == 1
    rest = client.post("/api/flows/picky/dead-letters/replay").json()
    assert len(rest["replayed"]) == 1
    assert client.get("/api/flows/picky/dead-letters").json()["total"] == 0


# -- the heartbeat route -----------------------------------------------------------------
_GATE = threading.Event()


@register_flow
class WaitsForGate(DataFlow):
    """Holds each message until ``_GATE`` opens: a flow as slow as a test wants."""

    source = {"type": "memory", "config": {"records": [{"n": 1}]}}
    sink = {"type": "memory", "config": {"name": "gated"}}

    def transform(self, message: Message) -> Message:
        _GATE.wait(30)
        return message


def test_heartbeat_answers_at_once_while_a_slow_run_goes_on(
    client: TestClient, store: FlowStore,
) -> None:
    from active_data_flow.catalog import catalog

    catalog.register(WaitsForGate)
    _GATE.clear()
    client.post("/api/flows", json={**memory_spec("slow"), "transform": "waits_for_gate"})
    client.post("/api/flows/slow/trigger")
    started = time.monotonic()
    summary = beat(client).json()
    answered_in = time.monotonic() - started
    try:
        assert len(summary["claimed"]) == 1
        assert answered_in < 5, f"the heartbeat held the request {answered_in:.1f} s"
        run_id = summary["claimed"][0]
        assert wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"]
                        == "running", what="the run to start")
        # A second beat while it runs claims nothing.
        assert beat(client).json()["claimed"] == []
    finally:
        _GATE.set()
    run = wait_for(lambda: (r := client.get(f"/api/runs/{run_id}").json())["ended_at"] and r,
                   what="the run to end")
    assert run["status"] == "succeeded"


def test_concurrent_heartbeats_claim_each_due_run_once(client: TestClient) -> None:
    names = [f"due_{i}" for i in range(12)]
    for name in names:
        client.post("/api/flows", json=memory_spec(name))
        client.post(f"/api/flows/{name}/trigger")
    claimed: list[int] = []
    barrier = threading.Barrier(6)

    def call() -> None:
        barrier.wait()
        claimed.extend(beat(client).json()["claimed"])

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == len(names)
    wait_for(lambda: client.get("/api/runs", params={"status": "succeeded"}).json()["total"]
             == len(names), what="every run to succeed")


# -- secrets -----------------------------------------------------------------------------
def test_secrets_are_masked_in_responses_and_kept_on_edit(
    client: TestClient, store: FlowStore,
) -> None:
    spec = memory_spec("secretive")
    spec["source"]["config"]["records"] = [{"user": "svc", "password": "hunter2"}]
    spec["sink"]["config"]["name"] = "postgresql://svc:hunter2@db.internal/app"
    created = client.post("/api/flows", json=spec)
    assert created.status_code == 201
    for response in (created, client.get("/api/flows/secretive"), client.get("/api/flows")):
        assert "hunter2" not in response.text
    shown = client.get("/api/flows/secretive").json()
    assert shown["sinks"][0]["config"]["name"] == "postgresql://svc:***@db.internal/app"
    # Sending the masked values back (with a real change) keeps the stored secrets.
    edited = client.patch("/api/flows/secretive", json={
        "source": shown["source"], "sinks": shown["sinks"], "batch_size": 5})
    assert edited.status_code == 200, edited.text
    stored = store.get_flow("secretive")
    assert stored.spec.source.to_dict()["config"]["records"][0]["password"] == "hunter2"
    assert stored.spec.to_dict()["sinks"][0]["config"]["name"] == (
        "postgresql://svc:hunter2@db.internal/app")
    assert stored.spec.batch_size == 5


def test_health_reports_the_database_the_heartbeat_and_overdue_flows(
    anonymous: TestClient, client: TestClient,
) -> None:
    fresh = anonymous.get("/health")
    assert fresh.status_code == 200
    assert fresh.json()["database"] == "ok"
    assert fresh.json()["last_heartbeat_at"] is None
    beat(client)
    after = anonymous.get("/health").json()
    assert after["status"] == "ok"
    assert after["heartbeat_age_s"] is not None
    assert after["heartbeat_age_s"] < 60


def test_metrics_expose_per_flow_rows_and_store_gauges(client: TestClient) -> None:
    client.post("/api/flows", json=memory_spec("measured", records=6))
    run_to_end(client, "measured")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'adf_flows{status="active"} 1.0' in text
    assert 'adf_flow_rows{flow="measured",kind="read"} 6.0' in text
    assert 'adf_flow_rows{flow="measured",kind="written"} 6.0' in text
    assert 'adf_flow_runs{flow="measured",status="succeeded"} 1.0' in text
    assert 'adf_flow_run_duration_seconds_max{flow="measured"}' in text
    assert 'adf_flow_cursor_age_seconds{flow="measured"}' in text
    assert "adf_heartbeat_age_seconds " in text
