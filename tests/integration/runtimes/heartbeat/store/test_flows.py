"""The flow store's flows: specs validated before storing, listing, pause/resume, trigger,
cursor reset, editing, deleting; code-defined flows synced from modules and folders."""

from __future__ import annotations

import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow import DataFlow
from active_data_flow.catalog import catalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat import FlowStore, Heartbeat, beat, sync
from active_data_flow.runtimes.heartbeat.store import (
    FlowBusy,
    FlowExists,
    FlowNotFound,
    RunCounts,
    RunStatus,
)
from tests.integration.runtimes.heartbeat.conftest import memory_flow

RECORDS = [{"id": i} for i in range(5)]


def stored_counts(store: FlowStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        flows = conn.execute(sa.text("SELECT count(*) FROM adf_flows")).scalar_one()
        runs = conn.execute(sa.text("SELECT count(*) FROM adf_runs")).scalar_one()
    return flows, runs


# -- specs -----------------------------------------------------------------------------
def test_a_spec_flow_is_stored_with_its_specs_and_is_due_at_once(store: FlowStore) -> None:
    before = store.now()
    flow = store.create_flow(memory_flow("copy", RECORDS, "out", interval=60, batch_size=2))

    assert flow.origin == "spec"
    assert flow.status == "active"
    assert flow.spec.source.to_dict() == {"type": "memory", "config": {"records": RECORDS}}
    assert flow.spec.to_dict()["sinks"] == [{"type": "memory", "config": {"name": "out"}}]
    assert flow.spec.runtime.to_dict() == {"type": "heartbeat",
                                           "config": {"interval": 60.0, "batch_size": 2}}
    assert flow.schedule == 60.0
    assert flow.next_run_at is not None
    assert before - timedelta(seconds=1) <= flow.next_run_at <= store.now()
    assert store.get_flow("copy") == flow
    assert flow.to_dict()["schedule"] == 60.0


BAD_SPECS: list[tuple[Any, str, str]] = [
    ({"name": "x", "source": {"type": "nope"}, "sink": {"type": "memory"}}, "type", "'nope'"),
    ({"name": "x", "source": {"type": "memory"}, "sink": {"type": "teleport"}}, "type",
     "'teleport'"),
    ({"name": "x", "source": {"type": "memory", "config": {"recs": []}},
      "sink": {"type": "memory"}}, "recs", "unknown option 'recs'"),
    ({"name": "x", "source": {"type": "memory", "config": {"records": 5}},
      "sink": {"type": "memory"}}, "records", "records"),
    ({"name": "x", "sorce": {"type": "memory"}, "sink": {"type": "memory"}}, "sorce", "sorce"),
    ({"name": "x", "sink": {"type": "memory"}}, "source", "source"),
    ({"name": "x", "source": {"type": "memory"}}, "sink", "no sink"),
    ({"name": "has space", "source": {"type": "memory"}, "sink": {"type": "memory"}}, "name",
     "name"),
    ({"name": "x", "source": {"type": "memory"}, "sink": {"type": "memory"},
      "runtime": {"type": "cron-daemon"}}, "type", "'cron-daemon'"),
    ({"name": "x", "source": {"type": "memory"}, "sink": {"type": "memory"},
      "runtime": {"type": "heartbeat", "config": {"interval": "every tuesday"}}}, "interval",
     "every tuesday"),
    ({"name": "x", "source": {"type": "memory"}, "sink": {"type": "memory"},
      "runtime": {"type": "heartbeat", "config": {"interval": "99 * * * *"}}}, "interval",
     "99 * * * *"),
    ({"name": "x", "source": {"type": "memory"}, "sink": {"type": "memory"},
      "runtime": {"type": "heartbeat", "config": {"timezone": "Mars/Olympus"}}}, "timezone",
     "Mars/Olympus"),
    ({"name": "x", "source": {"type": "memory"}, "sink": {"type": "memory"},
      "on_error": "dead_letter"}, "dead_letter_sink", "dead_letter_sink"),
    ({"name": "x", "source": "memory", "sink": {"type": "memory"}}, "source", "source"),
    ([1, 2, 3], "spec", "JSON object"),
]


def test_bad_specs_are_rejected_with_the_reason_and_nothing_is_stored(store: FlowStore) -> None:
    for spec, option, mentioned in BAD_SPECS:
        with pytest.raises(ConfigurationError) as caught:
            store.create_flow(spec)
        assert caught.value.option == option, (spec, str(caught.value))
        assert mentioned in str(caught.value), (spec, str(caught.value))
    assert stored_counts(store) == (0, 0)


def test_a_spec_borrowing_the_transform_of_an_unknown_code_flow_is_rejected(
    store: FlowStore,
) -> None:
    spec = {"name": "x", "source": {"type": "memory"}, "sink": {"type": "memory"},
            "transform": "no_such_code_flow"}
    with pytest.raises(ConfigurationError) as caught:
        store.create_flow(spec)
    assert caught.value.option == "transform", str(caught.value)
    assert "no_such_code_flow" in str(caught.value)
    assert stored_counts(store) == (0, 0)


def test_a_second_flow_with_the_same_name_is_refused(store: FlowStore) -> None:
    store.create_flow(memory_flow("copy", RECORDS, "out"))
    with pytest.raises(FlowExists, match="'copy' already exists") as caught:
        store.create_flow(memory_flow("copy", [], "other"))
    assert caught.value.option == "name"
    assert stored_counts(store) == (1, 0)


def test_an_on_demand_flow_has_no_pending_run_until_triggered(
    store: FlowStore, sink_name: str
) -> None:
    store.create_flow(memory_flow("adhoc", RECORDS, sink_name))
    assert store.get_flow("adhoc").next_run_at is None
    assert beat(store).claimed == []

    run = store.trigger("adhoc")
    assert (run.status, run.trigger) == ("pending", "manual")
    assert store.trigger("adhoc").id == run.id  # already pending: the same run
    summary = beat(store)
    assert summary.succeeded == [run.id]
    assert MemorySink.records_of(sink_name) == RECORDS
    assert store.get_flow("adhoc").next_run_at is None  # on demand: nothing scheduled


# -- listing ---------------------------------------------------------------------------
def test_flows_are_listed_by_page_with_filters_and_a_total(store: FlowStore) -> None:
    for i in range(12):
        store.create_flow(memory_flow(f"flow_{i:02d}", [], "out", interval=60),
                          paused=i % 3 == 0)
    store.create_flow(memory_flow("special_report", [], "out"))

    page = store.list_flows(limit=5)
    assert [f.name for f in page.items] == ["flow_00", "flow_01", "flow_02", "flow_03",
                                            "flow_04"]
    assert (page.total, page.has_more) == (13, True)
    last = store.list_flows(offset=10, limit=5)
    assert ([f.name for f in last.items], last.has_more) == (
        ["flow_10", "flow_11", "special_report"], False)
    paused = store.list_flows(status="paused")
    assert [f.name for f in paused.items] == ["flow_00", "flow_03", "flow_06", "flow_09"]
    assert all(f.next_run_at is None for f in paused.items)
    assert [f.name for f in store.list_flows(search="SPECIAL").items] == ["special_report"]
    assert store.list_flows(search="flow_1").total == 2
    assert store.list_flows(search="%").total == 0  # wildcards are literal
    with pytest.raises(ConfigurationError, match="status"):
        store.list_flows(status="sleeping")
    with pytest.raises(ConfigurationError):
        store.list_flows(limit=0)


# -- status ----------------------------------------------------------------------------
def test_pausing_cancels_the_pending_run_and_resuming_schedules_a_new_one(
    store: FlowStore,
) -> None:
    store.create_flow(memory_flow("copy", RECORDS, "out", interval=60))
    pending = store.list_runs("copy").items[0]

    paused = store.pause("copy")
    assert (paused.status, paused.next_run_at) == ("paused", None)
    cancelled = store.get_run(pending.id)
    assert cancelled.status == "cancelled"
    assert cancelled.ended_at is not None
    assert "paused" in (cancelled.error or "")
    assert beat(store).claimed == []

    resumed = store.resume("copy")
    assert resumed.status == "active"
    assert resumed.next_run_at is not None
    assert [r.status for r in store.list_runs("copy").items] == ["pending", "cancelled"]
    with pytest.raises(FlowNotFound):
        store.pause("nope")


def test_a_trigger_while_the_flow_runs_makes_it_run_again_right_after(
    store: FlowStore,
) -> None:
    store.create_flow(memory_flow("copy", RECORDS, "out", interval=3600))
    [claim] = store.runs.claim_due("w1")

    again = store.trigger("copy")
    assert again.id == claim.run_id
    assert again.status == "running"
    assert store.get_flow("copy").rerun_requested
    store.runs.finish(claim, RunStatus.SUCCEEDED, RunCounts())

    nxt = store.list_runs("copy", status="pending").items[0]
    assert nxt.trigger == "manual"
    assert nxt.due_at <= store.now()
    assert not store.get_flow("copy").rerun_requested


def test_the_cursor_can_be_reset_but_not_while_a_run_is_in_progress(
    store: FlowStore, sink_name: str
) -> None:
    store.create_flow(memory_flow("copy", RECORDS, sink_name, interval=60))
    beat(store)
    assert store.get_flow("copy").cursor == 4

    assert store.reset_cursor("copy", 1).cursor == 1
    store.trigger("copy")
    [claim] = store.runs.claim_due("w1")
    with pytest.raises(FlowBusy, match="running"):
        store.reset_cursor("copy")
    store.runs.release(claim, reason="test")
    assert store.reset_cursor("copy").cursor is None


# -- editing and deleting --------------------------------------------------------------
def test_editing_a_spec_flow_validates_it_and_moves_its_schedule(store: FlowStore) -> None:
    store.create_flow(memory_flow("copy", RECORDS, "out", interval=3600))
    store.pause("copy")
    store.resume("copy")  # due now again; push it an hour out to see the edit pull it in
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE adf_runs SET due_at = :t WHERE status = 'pending'"),
                     {"t": (store.now() + timedelta(hours=1)).replace(tzinfo=None)})

    edited = store.update_flow("copy", {"runtime": {"type": "heartbeat",
                                                    "config": {"interval": 60}}})
    assert edited.schedule == 60.0
    assert edited.next_run_at is not None
    assert edited.next_run_at <= store.now() + timedelta(seconds=61)

    with pytest.raises(ConfigurationError) as caught:
        store.update_flow("copy", {"sink": {"type": "memory", "config": {"nme": "x"}}})
    assert caught.value.option == "nme"
    assert store.get_flow("copy").spec.to_dict()["sinks"] == [
        {"type": "memory", "config": {"name": "out"}}]
    with pytest.raises(ConfigurationError, match="renamed"):
        store.update_flow("copy", {"name": "other"})

    unscheduled = store.update_flow("copy", {"runtime": {"type": "heartbeat"}})
    assert unscheduled.next_run_at is None


def test_deleting_a_flow_removes_its_runs_but_never_a_running_flow(store: FlowStore) -> None:
    store.create_flow(memory_flow("copy", RECORDS, "out", interval=60))
    [claim] = store.runs.claim_due("w1")
    with pytest.raises(FlowBusy):
        store.delete_flow("copy")
    store.runs.finish(claim, RunStatus.SUCCEEDED, RunCounts())

    store.delete_flow("copy")
    assert stored_counts(store) == (0, 0)
    with pytest.raises(FlowNotFound):
        store.get_flow("copy")


# -- code-defined flows ----------------------------------------------------------------
def write_module(folder: Path, body: str) -> str:
    """Write a flow module with a unique name into ``folder``; return its module name."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"flows_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return name


GOOD_FLOWS = """
    from active_data_flow import DataFlow
    from active_data_flow.connectors.memory import MemorySink, MemorySource
    from active_data_flow.runtimes.heartbeat import Heartbeat

    class CopyUsers(DataFlow):
        source = MemorySource(records=[{"id": 1}, {"id": 2}])
        sink = MemorySink(name="SINK")
        runtime = Heartbeat(interval=300)

        def transform(self, message):
            return {"id": message["id"], "copied": True}

    class OnDemandExport(DataFlow):
        source = MemorySource(records=[{"id": 3}])
        sink = MemorySink(name="SINK")

    class _Base(DataFlow):  # no source: an abstract helper, not a flow
        pass
"""


def test_sync_registers_code_flows_from_a_folder_then_reports_them_unchanged(
    store: FlowStore, tmp_path: Path, sink_name: str
) -> None:
    folder = tmp_path / "app" / "data_flows"
    write_module(folder, GOOD_FLOWS.replace("SINK", sink_name))

    report = sync(store, folder)
    assert (sorted(report.created), report.errors) == (["copy_users", "on_demand_export"], {})
    copy = store.get_flow("copy_users")
    assert (copy.origin, copy.schedule, copy.next_run_at is not None) == ("code", 300.0, True)
    assert store.get_flow("on_demand_export").spec.runtime.to_dict() == {"type": "inline",
                                                                         "config": {}}

    again = sync(store, folder)
    assert (again.created, sorted(again.unchanged)) == ([], ["copy_users", "on_demand_export"])
    assert beat(store).succeeded
    assert MemorySink.records_of(sink_name) == [{"id": 1, "copied": True},
                                                {"id": 2, "copied": True}]


def test_sync_updates_a_flow_whose_definition_changed(store: FlowStore) -> None:
    class Nightly(DataFlow):
        name = "nightly"
        source = MemorySource(records=[])
        sink = MemorySink(name="n")
        runtime = Heartbeat(interval="0 2 * * *")

    assert sync(store, Nightly).created == ["nightly"]
    catalog.clear()

    class NightlyV2(DataFlow):
        name = "nightly"
        source = MemorySource(records=[])
        sink = MemorySink(name="n")
        runtime = Heartbeat(interval=60)

    report = sync(store, NightlyV2)
    assert report.updated == ["nightly"]
    flow = store.get_flow("nightly")
    assert flow.schedule == 60.0
    assert flow.next_run_at is not None
    assert flow.next_run_at <= store.now() + timedelta(seconds=61)


def test_a_module_that_no_longer_imports_leaves_a_clear_error_on_its_flows(
    store: FlowStore, tmp_path: Path, sink_name: str
) -> None:
    folder = tmp_path / "flows"
    module = write_module(folder, GOOD_FLOWS.replace("SINK", sink_name))
    sync(store, folder)
    store.trigger("on_demand_export")
    # A new process (the module is imported afresh) finds the module broken.
    catalog.clear()
    del sys.modules[module]
    (folder / f"{module}.py").write_text("import no_such_dependency_xyz\n")

    report = sync(store, folder)
    assert any("no_such_dependency_xyz" in e for e in report.errors.values()), report.errors
    assert sorted(report.missing) == ["copy_users", "on_demand_export"]
    record = store.get_flow("copy_users")
    assert record.code_error is not None
    assert "no_such_dependency_xyz" in record.code_error
    assert module in record.code_error

    # The heartbeat survives: each broken flow fails its own run, with the reason.
    summary = beat(store)
    assert len(summary.failed) == 2
    assert summary.succeeded == []
    run = store.get_run(summary.failed[0])
    assert "not defined by any loaded module" in (run.error or "")
    assert run.traceback


def test_a_spec_flow_may_borrow_the_transform_of_a_code_flow(
    store: FlowStore, sink_name: str
) -> None:
    class Upper(DataFlow):
        name = "upper"
        source = MemorySource(records=[])
        sink = MemorySink(name="unused")

        def transform(self, message: Any) -> Any:
            return {"id": message["id"], "name": message["name"].upper()}

    sync(store, Upper)
    spec = memory_flow("shout", [{"id": 1, "name": "ada"}], sink_name)
    store.create_flow({**spec, "transform": "upper"})
    store.trigger("shout")
    assert beat(store).succeeded
    assert MemorySink.records_of(sink_name) == [{"id": 1, "name": "ADA"}]


def test_a_code_flow_cannot_take_the_name_of_a_spec_flow(store: FlowStore) -> None:
    store.create_flow(memory_flow("clash", [], "out"))

    class Clash(DataFlow):
        source = MemorySource(records=[])
        sink = MemorySink()

    report = sync(store, Clash)
    assert "clash" in report.errors
    assert "created from a spec" in report.errors["clash"]
    assert store.get_flow("clash").origin == "spec"


def test_a_code_flow_changes_with_its_code_not_through_the_store(store: FlowStore) -> None:
    class Coded(DataFlow):
        source = MemorySource(records=[])
        sink = MemorySink()

    sync(store, Coded)
    with pytest.raises(ConfigurationError, match="defined in code"):
        store.update_flow("coded", {"on_error": "skip"})


def test_runs_are_listed_newest_first_and_counted_up_to_a_limit(
    store: FlowStore, sink_name: str
) -> None:
    store.create_flow(memory_flow("adhoc", [], sink_name))
    ran = []
    for _ in range(5):
        ran.append(store.trigger("adhoc").id)
        beat(store)
    page = store.list_runs("adhoc", limit=2, count_limit=3)
    assert [r.id for r in page.items] == ran[::-1][:2]
    assert (page.total, page.total_is_exact) == (3, False)  # "3 or more"
    exact = store.list_runs("adhoc", offset=4, count_limit=None)
    assert ([r.id for r in exact.items], exact.total, exact.total_is_exact) == (
        [ran[0]], 5, True)
    assert store.list_runs(status="succeeded").total == 5
    assert store.list_runs(status="failed").items == []
    with pytest.raises(FlowNotFound):
        store.list_runs("nope")
    with pytest.raises(ConfigurationError, match="status"):
        store.list_runs(status="sleeping")
