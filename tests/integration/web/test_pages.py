"""The HTML pages over a real store: listing, pagination, forms, details."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient

import active_data_flow.testing  # noqa: F401  (registers the "faulty" sink)
from active_data_flow import DataFlow
from active_data_flow.catalog import catalog
from active_data_flow.runtimes.heartbeat import FlowStore, sync
from active_data_flow.runtimes.heartbeat.store import PartitionRecord
from tests.integration.web.conftest import (
    PASSWORD,
    TOKEN,
    USER,
    csrf_token,
    make_app,
    memory_spec,
    wait_for,
)


def finish(client: TestClient, store: FlowStore, name: str) -> int:
    run_id = store.trigger(name).id
    client.post("/heartbeat", headers={"X-ADF-Heartbeat-Token": TOKEN})
    wait_for(lambda: store.get_run(run_id).ended_at, what=f"run {run_id}")
    return run_id


def test_the_dashboard_paginates_and_filters(client: TestClient, store: FlowStore) -> None:
    for i in range(55):
        store.create_flow(memory_spec(f"flow_{i:02d}"))
    store.pause("flow_07")
    first = client.get("/")
    assert first.text.count('<tr class="') == 50
    assert "1\u201350 of 55" in first.text  # an en dash
    older = re.search(r'href="([^"]*offset=50[^"]*)" rel="next"', first.text)
    assert older
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count('<tr class="') == 5
    assert "flow_54" in second.text
    paused = client.get("/", params={"status": "paused"}).text
    assert "flow_07" in paused
    assert "flow_08" not in paused


def test_the_flow_page_shows_history_chart_and_cursor(
    client: TestClient, store: FlowStore,
) -> None:
    store.create_flow(memory_spec("charted", records=4))
    ids = [finish(client, store, "charted") for _ in range(3)]
    store.reset_cursor("charted", None)
    page = client.get("/flows/charted").text
    assert page.count('<rect class="bar"') == 3
    for run_id in ids:
        assert f'href="http://testserver/runs/{run_id}"' in page
    assert "Run now" in page
    assert "Edit" in page  # a spec flow can be edited


def test_a_failed_run_shows_its_error_and_traceback(
    client: TestClient, store: FlowStore,
) -> None:
    spec = memory_spec("doomed")
    # The faulty sink counts flushes per name across the process: a fresh name per test.
    spec["sink"] = {"type": "faulty", "config": {"name": f"doomed-{uuid.uuid4().hex}",
                                                 "fail_on": [1]}}
    store.create_flow(spec)
    run_id = finish(client, store, "doomed")
    page = client.get(f"/runs/{run_id}").text
    assert "injected failure on flush 1" in page
    assert "Traceback" in page
    failures = client.get("/runs", params={"status": "failed"}).text
    assert f"#{run_id}" in failures
    dashboard = client.get("/").text
    assert 'class="failing"' in dashboard


def test_the_edit_form_changes_a_flow_and_keeps_masked_secrets(
    client: TestClient, store: FlowStore,
) -> None:
    spec = memory_spec("guarded")
    spec["sink"]["config"]["name"] = "postgresql://svc:hunter2@db/app"
    store.create_flow(spec)
    form = client.get("/flows/guarded/edit")
    assert "hunter2" not in form.text
    fields = dict(re.findall(r'<textarea id="(\w+)" name="\w+"[^>]*>(.*?)</textarea>',
                             form.text, re.S))
    response = client.post("/flows/guarded/edit", follow_redirects=False, data={
        "csrf_token": csrf_token(client, "/flows/guarded/edit"),
        "source_type": "memory", "source_config": fields["source_config"].replace("&#34;", '"'),
        "sink_type": "memory", "sink_config": fields["sink_config"].replace("&#34;", '"'),
        "runtime_type": "heartbeat", "runtime_config": "{}", "interval": "*/5 * * * *",
        "on_error": "skip", "batch_size": "25"})
    assert response.status_code == 303, response.text
    flow = store.get_flow("guarded")
    assert flow.spec.to_dict()["sinks"][0]["config"]["name"] == (
        "postgresql://svc:hunter2@db/app")
    assert (flow.schedule, flow.spec.on_error, flow.spec.batch_size) == (
        "*/5 * * * *", "skip", 25)


def test_the_form_reports_malformed_json_next_to_the_field(client: TestClient) -> None:
    response = client.post("/flows", data={
        "csrf_token": csrf_token(client), "name": "x", "source_type": "memory",
        "source_config": "{not json", "sink_type": "memory"})
    assert response.status_code == 422
    assert 'id="source_config-error"' in response.text
    assert "not valid JSON" in response.text


class Rows(DataFlow):
    source = {"type": "memory", "config": {"records": [{"n": 1}]}}
    sink = {"type": "memory", "config": {}}


def test_code_flows_have_no_edit_form(client: TestClient, store: FlowStore) -> None:
    catalog.register(Rows)
    sync(store, Rows)
    page = client.get("/flows/rows").text
    assert "<dt>Defined</dt><dd>in code" in page
    assert "/flows/rows/edit" not in page


def _part(ident: int, run_id: int, part: int, status: str, worker_id: str | None, attempt: int,
          cursor: object, read: int, written: int) -> PartitionRecord:
    return PartitionRecord(id=ident, run_id=run_id, flow_id=1, part=part, status=status,
                           source={"type": "memory", "config": {}}, cursor=cursor,
                           worker_id=worker_id, attempt=attempt, read=read, written=written,
                           hold_seconds=60.0, created_at=datetime.now(UTC))


class StoreWithParts(FlowStore):
    """A real store whose ``list_partitions`` answers two parts (as a Celery run has)."""

    def list_partitions(self, run_id: int) -> list[PartitionRecord]:
        return [_part(1, run_id, 0, "succeeded", "w1", 1, {"line": 10}, 10, 10),
                _part(2, run_id, 1, "running", "w2", 2, None, 3, 3)]


def test_the_run_page_lists_partitions_when_the_store_has_them(store_url: str) -> None:
    store = StoreWithParts(store_url, auto_upgrade=True)
    try:
        store.create_flow(memory_spec("split"))
        run_id = store.trigger("split").id
        with TestClient(make_app(store)) as c:
            page = c.get(f"/runs/{run_id}", auth=(USER, PASSWORD)).text
        assert "Partitions (2)" in page
        assert "w2" in page
    finally:
        store.close()


def test_overdue_flows_are_flagged_on_the_dashboard(store: FlowStore) -> None:
    store.create_flow(memory_spec("late", runtime={"type": "heartbeat",
                                                   "config": {"interval": 60}}))
    with TestClient(make_app(store, overdue_grace_s=0)) as strict:
        assert ">overdue</span>" in strict.get("/", auth=(USER, PASSWORD)).text
    with TestClient(make_app(store)) as lenient:  # due just now: within the grace
        assert ">overdue</span>" not in lenient.get("/", auth=(USER, PASSWORD)).text
