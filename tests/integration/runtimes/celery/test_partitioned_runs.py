"""Partitioned runs on real workers: split, executed in parallel, recorded, completed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from active_data_flow.runtimes.heartbeat import FlowStore, beat
from active_data_flow.web import create_app
from tests.integration.runtimes.celery.conftest import flow_spec, target_ids, wait_run
from tests.integration.runtimes.celery.harness import Broker, Cluster


def test_a_partitioned_run_is_split_run_by_two_workers_and_completed(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str
) -> None:
    spec = flow_spec("copy", broker, rows=6000, wait=0.05, batch_size=500, partitions=4)
    spec["triggers"] = ["follow_up"]
    store.create_flow(spec)
    store.create_flow(flow_spec("follow_up", broker, rows=0))
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    run = store.trigger("copy")
    assert beat(store).dispatched == [run.id]

    ended = wait_run(store, run.id)

    assert ended.status == "succeeded", cluster.logs()
    parts = store.list_partitions(run.id)
    assert [p.status for p in parts] == ["succeeded"] * 4
    assert [p.attempt for p in parts] == [1] * 4
    assert sum(p.read for p in parts) == ended.read == ended.written == 6000
    assert {p.worker_id.split("@")[0] for p in parts if p.worker_id} == {"a", "b"}
    assert target_ids(data_url) == list(range(6000))
    assert store.get_flow("copy").cursor == 5999
    assert store.list_runs("follow_up").items[0].trigger == "chain"  # its triggers ran
    # The web engine's run page lists the parts and the workers that ran them.
    with TestClient(create_app(store, insecure_no_auth=True)) as web:
        page = web.get(f"/runs/{run.id}").text
    assert "Partitions (4)" in page
    assert all(p.worker_id and p.worker_id in page for p in parts)
    # The next run starts after the cursor: nothing left to read.
    again = store.trigger("copy")
    beat(store)
    assert wait_run(store, again.id).read == 0


def test_a_failed_partition_is_retried_alone(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str, tmp_path: Path
) -> None:
    flag = tmp_path / "fail-once"
    flag.touch()
    spec = flow_spec("flaky", broker, rows=4000, batch_size=250, partitions=4, backoff=0.2)
    spec["source"]["config"].update(fail_at=2600, fail_flag=str(flag))
    store.create_flow(spec)
    cluster.worker("a", concurrency=2)
    run = store.trigger("flaky")
    beat(store)

    ended = wait_run(store, run.id)

    assert ended.status == "succeeded", cluster.logs()
    parts = store.list_partitions(run.id)
    assert [p.attempt for p in parts] == [1, 1, 2, 1]  # ids 2000-2999 are partition 2
    assert parts[2].cursor_start is None
    assert parts[2].read == 1000
    assert target_ids(data_url) == list(range(4000))


def test_a_permanently_failed_partition_fails_the_run_and_keeps_the_cursor(
    cluster: Cluster, store: FlowStore, broker: Broker, tmp_path: Path
) -> None:
    flag = tmp_path / "fail-once"
    flag.touch()
    spec = flow_spec("broken", broker, rows=2000, batch_size=250, partitions=2)
    spec["source"]["config"].update(fail_at=1500, fail_flag=str(flag), fail_kind="permanent")
    store.create_flow(spec)
    cluster.worker("a", concurrency=2)
    run = store.trigger("broken")
    beat(store)

    ended = wait_run(store, run.id)

    assert ended.status == "failed"
    assert "partition 1" in (ended.error or "")
    assert "injected permanent" in (ended.error or "")
    parts = store.list_partitions(run.id)
    assert [(p.status, p.attempt) for p in parts] == [("succeeded", 1), ("failed", 1)]
    assert parts[1].traceback
    assert "SourceError" in parts[1].traceback
    flow = store.get_flow("broken")
    assert flow.cursor is None
    assert flow.last_run_status == "failed"


def test_a_json_lines_file_is_split_by_byte_ranges_across_workers(
    cluster: Cluster, store: FlowStore, broker: Broker, data_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stored specs may read files only under the allowed roots (here and in the workers).
    monkeypatch.setenv("ADF_FILE_ROOTS", str(tmp_path))
    cluster.env["ADF_FILE_ROOTS"] = str(tmp_path)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": i, "v": f"line-{i}"}) + "\n" for i in range(3000)))
    spec = flow_spec("from_file", broker, rows=0, batch_size=200, partitions=3)
    spec["source"] = {"type": "jsonl", "config": {"path": str(path)}}
    store.create_flow(spec)
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=1)
    run = store.trigger("from_file")
    beat(store)

    assert wait_run(store, run.id).status == "succeeded", cluster.logs()

    parts = store.list_partitions(run.id)
    assert len(parts) == 3
    offsets = [p.source["config"].get("start_offset", 0) for p in parts]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 3
    assert target_ids(data_url) == list(range(3000))
    assert store.get_flow("from_file").cursor["offset"] == path.stat().st_size


def test_waiting_runs_start_in_priority_order(
    cluster: Cluster, store: FlowStore, broker: Broker
) -> None:
    runs = {}
    for name, priority in (("low", 1), ("middle", 5), ("high", 9)):
        store.create_flow(flow_spec(name, broker, rows=10, priority=priority))
        runs[name] = store.trigger(name).id
    beat(store)  # all three are queued before any worker consumes
    cluster.worker("a")

    ended = {name: wait_run(store, run_id) for name, run_id in runs.items()}

    assert {r.status for r in ended.values()} == {"succeeded"}
    order = sorted(ended, key=lambda name: store.list_partitions(runs[name])[0].started_at)
    assert order == ["high", "middle", "low"]
