"""The store refuses what its databases cannot hold or its scheduler cannot follow (issue 12),
on SQLite, PostgreSQL and MariaDB and in the memory store alike: trigger cycles (saved
through the facade or synced from code), values with NUL or NaN, intervals out of range,
cron expressions that never match; a schedule that fails while a run ends still ends it;
flow names are case-sensitive everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from active_data_flow import DataFlow
from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource
from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat import Heartbeat, sync
from active_data_flow.runtimes.heartbeat.store import (
    FlowExists,
    FlowNotFound,
    FlowStore,
    MemoryStore,
    RunCounts,
    RunStatus,
    Store,
)
from tests.integration.runtimes.heartbeat.conftest import memory_flow


@pytest.fixture(params=["sqlite", "postgresql", "mariadb", "memory"])
def any_store(request: pytest.FixtureRequest,
              make_database: Callable[[str], str]) -> Iterator[Store]:
    """The SQL store on each database, and the memory store (same contract)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with FlowStore(make_database(request.param), auto_upgrade=True) as store:
        yield store


def flow(name: str, **extra: Any) -> dict[str, Any]:
    return {**memory_flow(name, [{"id": 1}], f"out-{name}", interval=60), **extra}


def test_trigger_cycles_are_refused_when_saved(any_store: Store) -> None:
    with pytest.raises(ConfigurationError) as direct:
        any_store.create_flow(flow("a", triggers=["a"]))
    assert direct.value.option == "triggers"
    any_store.create_flow(flow("a", triggers=["b"]))
    any_store.create_flow(flow("b", triggers=["c"]))
    with pytest.raises(ConfigurationError, match=r"c -> a -> b -> c") as indirect:
        any_store.create_flow(flow("c", triggers=["a"]))
    assert indirect.value.option == "triggers"
    any_store.create_flow(flow("c", triggers=["d"]))  # a chain is fine
    with pytest.raises(ConfigurationError, match="cycle"):
        any_store.update_flow("c", {"triggers": ["a"]})
    assert any_store.get_flow("c").spec.triggers == ("d",)


def test_code_flows_with_a_trigger_cycle_are_not_synced(any_store: Store) -> None:
    class PingFlow(DataFlow):
        name = "ping"
        source = JsonLinesSource(path="in.jsonl")
        sink = JsonLinesSink(path="out.jsonl")
        runtime = Heartbeat(interval=60)
        triggers: ClassVar[tuple[str, ...]] = ("pong",)

    class PongFlow(PingFlow):
        name = "pong"
        triggers = ("ping",)

    report = sync(any_store, PingFlow)
    assert report.created == ["ping"]
    report = sync(any_store, PongFlow)
    assert "pong" in report.errors
    assert "cycle" in report.errors["pong"]
    with pytest.raises(FlowNotFound):
        any_store.get_flow("pong")


def test_chained_runs_are_never_queued_for_a_paused_flow(any_store: Store) -> None:
    any_store.create_flow(flow("first", triggers=["second"]))
    any_store.create_flow(flow("second"), paused=True)
    claim = any_store.runs.claim_due("w")[0]
    any_store.runs.finish(claim, RunStatus.SUCCEEDED, RunCounts(read=1, written=1))
    assert any_store.list_runs(flow="second").total == 0


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("cursor", [float("nan"), float("inf"), -float("inf"), "a\x00b",
                                    {"k\x00": 1}, _nested(100)])
def test_cursors_the_databases_cannot_store_are_refused(any_store: Store, cursor: Any) -> None:
    any_store.create_flow(flow("cursor"))
    with pytest.raises(ConfigurationError) as info:
        any_store.reset_cursor("cursor", cursor)
    assert info.value.option == "cursor"
    with pytest.raises(ConfigurationError) as repository:  # the repository checks too
        any_store.flows.reset_cursor("cursor", cursor)
    assert repository.value.option == "cursor"
    assert any_store.get_flow("cursor").cursor is None


def test_a_nul_in_a_search_or_a_spec_is_refused(any_store: Store) -> None:
    with pytest.raises(ConfigurationError) as info:
        any_store.list_flows(search="a\x00")
    assert info.value.option == "search"
    with pytest.raises(ConfigurationError):
        any_store.create_flow({**flow("nul"), "source": {"type": "memory", "config": {
            "records": [{"text": "a\x00b"}]}}})
    with pytest.raises(ConfigurationError):
        any_store.create_flow({**flow("nul_key"), "source": {"type": "memory", "config": {
            "records": [{"a\x00": 1}]}}})
    assert any_store.list_flows().total == 0


@pytest.mark.parametrize("interval", [1e-9, 0.0009, 1e308, 366 * 86_400 + 1, float("nan"),
                                      float("inf"), -1, 0])
def test_intervals_out_of_range_are_refused_for_specs_and_code(
    any_store: Store, interval: float,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        any_store.create_flow(memory_flow("x", [], "out-x", interval=interval))
    assert info.value.option == "interval"
    with pytest.raises(ConfigurationError):
        Heartbeat(interval=interval)
    assert any_store.list_flows().total == 0


def test_the_documented_interval_range_is_accepted(any_store: Store) -> None:
    any_store.create_flow(memory_flow("fast", [], "out-fast", interval=0.001))
    any_store.create_flow(memory_flow("slow", [], "out-slow", interval=366 * 86_400))
    assert any_store.list_flows().total == 2


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 1 1 0#5"])
def test_cron_that_never_matches_is_refused_naming_the_interval(
    any_store: Store, cron: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        any_store.create_flow(memory_flow("never", [], "out-never", interval=cron))
    assert info.value.option == "interval"
    any_store.create_flow(memory_flow("never", [], "out-never", interval=60))
    with pytest.raises(ConfigurationError) as patched:
        any_store.update_flow("never", {"runtime": {"type": "heartbeat",
                                                    "config": {"interval": cron}}})
    assert patched.value.option == "interval"


def test_a_schedule_failing_while_a_run_ends_still_ends_it_and_says_why(
    any_store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from active_data_flow.runtimes.heartbeat.schedule import Schedule

    any_store.create_flow(flow("doomed"))
    claim = any_store.runs.claim_due("w")[0]

    def overflow(*_args: Any) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(Schedule, "next_due", overflow)
    record = any_store.runs.finish(claim, RunStatus.SUCCEEDED, RunCounts(read=1))
    assert record.status == "succeeded"
    doomed = any_store.get_flow("doomed")
    assert doomed.status == "paused"
    assert doomed.last_error is not None
    assert "could not be scheduled" in doomed.last_error
    assert "OverflowError" in doomed.last_error
    assert any_store.list_runs(flow="doomed", status="running").total == 0
    any_store.delete_flow("doomed")  # nothing left running: deletable


def test_flow_names_differ_by_case_on_every_database(any_store: Store) -> None:
    any_store.create_flow(flow("caseflow"))
    any_store.create_flow(flow("CaseFlow"))
    with pytest.raises(FlowNotFound):
        any_store.get_flow("CASEFLOW")
    with pytest.raises(FlowExists):
        any_store.create_flow(flow("CaseFlow"))
    any_store.delete_flow("caseflow")
    assert any_store.get_flow("CaseFlow").name == "CaseFlow"


def test_the_name_columns_are_binary_on_mariadb(mariadb_url: str) -> None:
    with FlowStore(mariadb_url, auto_upgrade=True) as store, store.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND column_name IN ('name', 'flow') "
            "AND table_name IN ('adf_flows', 'adf_dead_letters')")).all()
    assert {(t.lower(), c, coll) for t, c, coll in rows} == {
        ("adf_flows", "name", "utf8mb4_bin"), ("adf_dead_letters", "flow", "utf8mb4_bin")}
