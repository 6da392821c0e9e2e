"""The flow store's contract, run on every implementation: the in-memory store and FlowStore
on SQLite, PostgreSQL and MariaDB (a fresh database per test).

Every repository method of :mod:`active_data_flow.runtimes.heartbeat.store.base` is covered
here, with the same assertions on every store: the memory store is the SQL store's twin (the
last test also drives both with the same random operations and compares everything they
show). Time comes from an injected clock that the tests move; nothing sleeps.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from active_data_flow.errors import (
    ConfigurationError,
    ConnectorTimeout,
    FlowRunError,
    RunClaimLost,
)
from active_data_flow.flow import FlowSpec
from active_data_flow.message import Untyped
from active_data_flow.runner import dead_letter
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedPartition,
    ClaimedRun,
    FlowBusy,
    FlowExists,
    FlowNotFound,
    FlowStore,
    MemoryStore,
    PartitionBusy,
    RunCounts,
    RunNotFound,
    RunStatus,
    Store,
)
from active_data_flow.runtimes.heartbeat.store.base import checked_spec

LEASE = 30.0
#: A Monday, mid-minute, with microseconds (every store keeps them).
T0 = datetime(2030, 1, 7, 10, 0, 30, 250_000, tzinfo=UTC)
FIVE_PAST = datetime(2030, 1, 7, 10, 5, tzinfo=UTC)

STORES = ("memory", "sqlite", "postgresql", "mariadb")


class Clock:
    """A settable clock: ``clock.advance(seconds)``, ``clock.set(moment)``."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest,
               make_database: Callable[[str], str]) -> Iterator[Callable[..., Store]]:
    """Factory: ``make_store(clock=..., lease_seconds=...)`` -> a store of the kind under
    test (SQL: migrated, on one fresh database for the whole test)."""
    kind: str = request.param
    url = None if kind == "memory" else make_database(kind)
    made: list[Store] = []

    def make(**options: Any) -> Store:
        store: Store = (MemoryStore(**options) if url is None
                        else FlowStore(url, auto_upgrade=True, **options))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(make_store: Callable[..., Store], clock: Clock) -> Store:
    """A store whose time is ``clock`` and whose leases last LEASE seconds."""
    return make_store(clock=clock, lease_seconds=LEASE)


def flow(name: str, *, interval: float | str | None = None, records: list[Any] | None = None,
         sink: str = "out", **fields: Any) -> dict[str, Any]:
    """The JSON spec of a flow copying memory records to a memory sink, on heartbeats."""
    config: dict[str, Any] = {} if interval is None else {"interval": interval}
    return {"name": name,
            "source": {"type": "memory", "config": {"records": records or []}},
            "sink": {"type": "memory", "config": {"name": sink}},
            "runtime": {"type": "heartbeat", "config": config}, **fields}


def claim_of(store: Store, name: str, worker: str = "w1") -> ClaimedRun:
    """Claim the flow's due run (the only one due)."""
    claims = store.runs.claim_due(worker)
    assert [c.flow.name for c in claims] == [name]
    return claims[0]


def pending(store: Store, name: str) -> list[Any]:
    return store.list_runs(name, "pending").items


def ok(store: Store, claim: ClaimedRun, counts: RunCounts | None = None,
       **options: Any) -> Any:
    """Finish ``claim`` as succeeded."""
    return store.runs.finish(claim, RunStatus.SUCCEEDED, counts or RunCounts(), **options)


# == flows ===============================================================================
def test_a_created_interval_flow_is_due_at_once(store: Store) -> None:
    record = store.create_flow(flow("a", interval=60, records=[{"id": 1}]))

    assert (record.name, record.origin, record.status, record.schedule) == (
        "a", "spec", "active", 60)
    assert record.spec.source.to_dict() == {"type": "memory",
                                            "config": {"records": [{"id": 1}]}}
    assert record.spec.to_dict()["sinks"] == [{"type": "memory", "config": {"name": "out"}}]
    assert (record.cursor, record.running_run_id, record.rerun_requested) == (None, None, False)
    assert record.next_run_at == T0
    assert (record.created_at, record.updated_at) == (T0, T0)
    [run] = pending(store, "a")
    assert (run.flow, run.trigger, run.due_at, run.attempt) == ("a", "schedule", T0, 0)
    assert store.get_flow("a") == record


def test_a_created_cron_flow_is_first_due_at_its_next_time(store: Store) -> None:
    record = store.create_flow(flow("a", interval="*/5 * * * *"))

    assert (record.schedule, record.next_run_at) == ("*/5 * * * *", FIVE_PAST)


def test_an_on_demand_flow_and_a_paused_flow_have_no_pending_run(store: Store) -> None:
    on_demand = store.create_flow(flow("a"))
    paused = store.create_flow(flow("b", interval=60), paused=True)

    assert (on_demand.schedule, on_demand.next_run_at) == (None, None)
    assert (paused.status, paused.next_run_at) == ("paused", None)
    assert store.list_runs().total == 0


def test_a_flow_name_is_taken_once(store: Store) -> None:
    store.create_flow(flow("a", interval=60))

    with pytest.raises(FlowExists) as caught:
        store.create_flow(flow("a"))
    assert caught.value.option == "name"
    assert store.get_flow("a").schedule == 60


def test_unknown_flows_raise_flow_not_found(store: Store) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: store.get_flow("nope"), lambda: store.update_flow("nope", {"batch_size": 2}),
        lambda: store.delete_flow("nope"), lambda: store.pause("nope"),
        lambda: store.resume("nope"), lambda: store.trigger("nope"),
        lambda: store.reset_cursor("nope", 1), lambda: store.list_runs("nope"),
        lambda: store.flow_stats("nope"),
    ]
    for call in calls:
        with pytest.raises(FlowNotFound):
            call()


def test_update_replaces_the_spec(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    [run] = pending(store, "a")
    clock.advance(5)

    record = store.update_flow("a", {"batch_size": 5, "on_error": "skip"})

    assert (record.spec.batch_size, record.spec.on_error) == (5, "skip")
    assert record.spec.source.to_dict() == flow("a")["source"]
    assert (record.created_at, record.updated_at) == (T0, T0 + timedelta(seconds=5))
    assert [r.id for r in pending(store, "a")] == [run.id]  # same schedule: untouched
    assert store.get_flow("a") == record


def test_update_switches_between_one_sink_and_several(store: Store) -> None:
    store.create_flow(flow("a"))
    two = [{"type": "memory", "config": {"name": "x"}}, {"type": "memory", "config": {"name": "y"}}]

    assert store.update_flow("a", {"sinks": two}).spec.to_dict()["sinks"] == two
    one = store.update_flow("a", {"sink": {"type": "memory", "config": {"name": "z"}}})
    assert one.spec.to_dict()["sinks"] == [{"type": "memory", "config": {"name": "z"}}]


def test_update_refuses_renames_code_flows_and_invalid_changes(store: Store) -> None:
    store.create_flow(flow("a"))
    store.flows.register_code(checked_spec(flow("c")))

    for name, change, option in [("a", {"name": "b"}, "name"), ("c", {"batch_size": 2}, "name"),
                                 ("a", {"batch_size": 0}, "batch_size"),
                                 ("a", {"source": {"type": "nope"}}, "type")]:
        with pytest.raises(ConfigurationError) as caught:
            store.update_flow(name, change)
        assert caught.value.option == option
    assert store.get_flow("a").spec.batch_size is None


def test_a_shorter_interval_moves_the_pending_run_sooner_never_later(
    store: Store, clock: Clock
) -> None:
    store.create_flow(flow("a", interval=3600))
    ok(store, claim_of(store, "a"))
    assert store.get_flow("a").next_run_at == T0 + timedelta(hours=1)

    assert store.update_flow("a", {"runtime": {"type": "heartbeat", "config": {
        "interval": 60}}}).next_run_at == T0 + timedelta(seconds=60)
    clock.advance(10)
    assert store.update_flow("a", {"runtime": {"type": "heartbeat", "config": {
        "interval": 7200}}}).next_run_at == T0 + timedelta(seconds=60)
    cron = store.update_flow("a", {"runtime": {"type": "heartbeat", "config": {
        "interval": "0 * * * *"}}})
    assert cron.next_run_at == datetime(2030, 1, 7, 11, tzinfo=UTC)
    assert len(pending(store, "a")) == 1


def test_removing_the_schedule_cancels_the_pending_run(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    [run] = pending(store, "a")

    record = store.update_flow("a", {"runtime": {"type": "heartbeat", "config": {}}})

    assert (record.schedule, record.next_run_at) == (None, None)
    cancelled = store.get_run(run.id)
    assert (cancelled.status, cancelled.ended_at) == ("cancelled", T0)
    assert "no longer scheduled" in (cancelled.error or "")


def test_scheduling_an_on_demand_flow_queues_its_first_run(store: Store) -> None:
    store.create_flow(flow("a"))

    record = store.update_flow("a", {"runtime": {"type": "heartbeat", "config": {
        "interval": 60}}})

    assert record.next_run_at == T0
    assert [r.trigger for r in pending(store, "a")] == ["schedule"]


def test_a_manual_pending_run_keeps_its_time_when_the_schedule_changes(
    store: Store, clock: Clock
) -> None:
    store.create_flow(flow("a"))
    run = store.trigger("a")
    clock.advance(5)

    store.update_flow("a", {"runtime": {"type": "heartbeat", "config": {"interval": 60}}})

    assert [(r.id, r.trigger, r.due_at) for r in pending(store, "a")] == [
        (run.id, "manual", T0)]


def test_delete_removes_the_flow_with_its_runs_parts_and_dead_letters(store: Store) -> None:
    record = store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    store.dead_letters.add([dead_letter("a", Untyped({"id": 1}), ValueError("x"))],
                           claim.run_id)
    [part_id] = store.partitions.open(claim, [(flow("a")["source"], None)],
                                      cursor_start=None, hold_seconds=60) or []
    got = store.partitions.claim(part_id, "w2")
    assert isinstance(got, ClaimedPartition)
    store.partitions.finish(got, RunStatus.SUCCEEDED, RunCounts())
    store.create_flow(flow("b", interval=60))

    store.delete_flow("a")

    with pytest.raises(FlowNotFound):
        store.get_flow("a")
    with pytest.raises(RunNotFound):
        store.get_run(claim.run_id)
    with pytest.raises(RunNotFound):
        store.get_partition(part_id)
    assert store.list_partitions(claim.run_id) == []
    assert store.flows.cursor(record.id) is None
    assert store.list_dead_letters("a", include_replayed=True).total == 0
    assert [r.flow for r in store.list_runs().items] == ["b"]
    assert store.create_flow(flow("a")).name == "a"  # the name is free again


def test_a_running_flow_cannot_be_deleted(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")

    with pytest.raises(FlowBusy):
        store.delete_flow("a")
    ok(store, claim)
    store.delete_flow("a")  # its next run is only pending
    assert store.list_flows().total == 0


def test_page_lists_flows_by_name_filtered_and_paged(store: Store) -> None:
    for name in ("gamma", "alpha", "delta", "beta", "epsilon"):
        store.create_flow(flow(name))
    store.pause("gamma")

    everything = store.list_flows()
    assert [f.name for f in everything.items] == ["alpha", "beta", "delta", "epsilon", "gamma"]
    assert (everything.total, everything.has_more) == (5, False)
    assert [f.name for f in store.list_flows(status="paused").items] == ["gamma"]
    assert store.list_flows(status="active").total == 4
    assert [f.name for f in store.list_flows(search="ALP").items] == ["alpha"]
    assert [f.name for f in store.list_flows(search="ta").items] == ["beta", "delta"]
    first = store.list_flows(limit=2)
    assert ([f.name for f in first.items], first.total, first.has_more) == (
        ["alpha", "beta"], 5, True)
    last = store.list_flows(offset=4, limit=2)
    assert ([f.name for f in last.items], last.has_more) == (["gamma"], False)
    paused = store.list_flows(status="paused", search="a", limit=1)
    assert ([f.name for f in paused.items], paused.total) == (["gamma"], 1)


def test_search_takes_wildcard_characters_literally(store: Store) -> None:
    for name in ("a_b", "axb", "a.b-c", "abc"):
        store.create_flow(flow(name))

    assert [f.name for f in store.list_flows(search="a_b").items] == ["a_b"]
    assert [f.name for f in store.list_flows(search=".b-").items] == ["a.b-c"]
    assert store.list_flows(search="%").total == 0


@pytest.mark.parametrize(("options", "option"), [
    ({"status": "sleeping"}, "status"), ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
    ({"offset": -1}, "offset"),
])
def test_page_refuses_bad_filters(store: Store, options: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store.list_flows(**options)
    assert caught.value.option == option


def test_pause_cancels_the_pending_run_and_resume_makes_it_due_at_once(
    store: Store, clock: Clock
) -> None:
    store.create_flow(flow("a", interval=60))
    [run] = pending(store, "a")
    clock.advance(5)

    paused = store.pause("a")

    assert (paused.status, paused.next_run_at) == ("paused", None)
    cancelled = store.get_run(run.id)
    assert (cancelled.status, cancelled.error, cancelled.ended_at) == (
        "cancelled", "cancelled: the flow was paused", clock.now)
    assert store.runs.claim_due("w1") == []

    clock.advance(100)
    resumed = store.resume("a")
    assert (resumed.status, resumed.next_run_at) == ("active", clock.now)
    assert [r.trigger for r in pending(store, "a")] == ["schedule"]


def test_resuming_a_cron_flow_waits_for_its_next_time(store: Store) -> None:
    store.create_flow(flow("a", interval="*/5 * * * *"), paused=True)

    assert store.resume("a").next_run_at == FIVE_PAST


def test_pausing_a_running_flow_lets_the_run_end_without_a_next_run(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")

    assert store.pause("a").running_run_id == claim.run_id
    ok(store, claim)

    record = store.get_flow("a")
    assert (record.status, record.last_run_status, record.next_run_at) == (
        "paused", "succeeded", None)
    assert pending(store, "a") == []


def test_resuming_while_the_run_still_runs_schedules_when_it_ends(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    store.pause("a")

    assert store.resume("a").running_run_id == claim.run_id
    assert pending(store, "a") == []
    ok(store, claim)
    assert store.get_flow("a").next_run_at == T0 + timedelta(seconds=60)


def test_trigger_makes_the_pending_run_due_now(store: Store) -> None:
    store.create_flow(flow("a", interval="*/5 * * * *"))
    [run] = pending(store, "a")

    triggered = store.trigger("a")

    assert (triggered.id, triggered.status, triggered.trigger, triggered.due_at) == (
        run.id, "pending", "manual", T0)
    assert store.get_flow("a").next_run_at == T0
    assert claim_of(store, "a").trigger == "manual"


def test_trigger_queues_a_run_of_an_on_demand_flow(store: Store) -> None:
    store.create_flow(flow("a"))

    run = store.trigger("a", reason="cli")

    assert (run.flow, run.status, run.trigger, run.due_at) == ("a", "pending", "cli", T0)
    assert store.trigger("a").id == run.id  # one live run at most


def test_trigger_while_running_queues_a_run_right_after(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=3600))
    claim = claim_of(store, "a")

    running = store.trigger("a")

    assert (running.id, running.status) == (claim.run_id, "running")
    assert store.get_flow("a").rerun_requested
    clock.advance(5)
    ok(store, claim)
    record = store.get_flow("a")
    assert (record.rerun_requested, record.next_run_at) == (False, clock.now)
    assert [r.trigger for r in pending(store, "a")] == ["manual"]


def test_a_paused_flow_runs_once_when_triggered(store: Store) -> None:
    store.create_flow(flow("a", interval=60), paused=True)

    run = store.trigger("a")
    ok(store, claim_of(store, "a"))

    assert store.get_run(run.id).status == "succeeded"
    record = store.get_flow("a")
    assert (record.status, record.next_run_at) == ("paused", None)


def test_pausing_drops_a_requested_rerun(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    store.trigger("a")

    assert store.pause("a").rerun_requested is False
    ok(store, claim)
    assert pending(store, "a") == []


def test_reset_cursor_sets_where_the_next_run_resumes(store: Store, clock: Clock) -> None:
    record = store.create_flow(flow("a", interval=60))
    clock.advance(1)

    reset = store.reset_cursor("a", {"id": 7, "at": "2030-01-01"})

    assert (reset.cursor, reset.cursor_updated_at) == ({"id": 7, "at": "2030-01-01"}, clock.now)
    assert store.flows.cursor(record.id) == {"id": 7, "at": "2030-01-01"}
    assert claim_of(store, "a").cursor == {"id": 7, "at": "2030-01-01"}


def test_a_running_flows_cursor_cannot_be_reset(store: Store) -> None:
    record = store.create_flow(flow("a", interval=60))
    store.reset_cursor("a", 3)
    claim = claim_of(store, "a")

    with pytest.raises(FlowBusy):
        store.reset_cursor("a", None)
    ok(store, claim)
    assert store.reset_cursor("a", None).cursor is None
    assert store.flows.cursor(record.id) is None


def test_register_code_creates_updates_or_leaves_a_code_flow(store: Store, clock: Clock) -> None:
    spec = checked_spec(flow("c", interval=3600))

    assert store.flows.register_code(spec) == "created"
    record = store.get_flow("c")
    assert (record.origin, record.spec, record.next_run_at) == ("code", spec, T0)
    ok(store, claim_of(store, "c"))
    assert store.flows.register_code(spec) == "unchanged"

    clock.advance(10)
    changed = checked_spec(flow("c", interval=60, batch_size=10))
    assert store.flows.register_code(changed) == "updated"
    record = store.get_flow("c")
    assert (record.spec, record.updated_at) == (changed, clock.now)
    assert record.next_run_at == clock.now + timedelta(seconds=60)  # the interval shrank


def test_register_code_refuses_a_name_held_by_a_spec_flow(store: Store) -> None:
    store.create_flow(flow("a"))

    with pytest.raises(FlowExists) as caught:
        store.flows.register_code(checked_spec(flow("a", interval=60)))
    assert caught.value.option == "name"
    record = store.get_flow("a")
    assert (record.origin, record.schedule) == ("spec", None)


def test_code_errors_are_recorded_on_code_flows_and_cleared(store: Store) -> None:
    spec = checked_spec(flow("c"))
    store.flows.register_code(spec)
    store.create_flow(flow("s"))

    store.flows.set_code_error("c", "ImportError: no module named 'app'")
    store.flows.set_code_error("s", "ignored: not a code flow")

    assert store.get_flow("c").code_error == "ImportError: no module named 'app'"
    assert store.get_flow("s").code_error is None
    store.flows.set_code_error("c", None)
    assert store.get_flow("c").code_error is None
    store.flows.set_code_error("c", "broken")
    assert store.flows.register_code(spec) == "unchanged"  # the code loads again
    assert store.get_flow("c").code_error is None


def test_code_flow_names_are_the_code_defined_flows(store: Store) -> None:
    for name in ("c2", "c1"):
        store.flows.register_code(checked_spec(flow(name)))
    store.create_flow(flow("s"))

    assert sorted(store.flows.code_flow_names()) == ["c1", "c2"]


def test_overdue_flows_wait_past_due_beyond_the_grace(store: Store, clock: Clock) -> None:
    store.create_flow(flow("late", interval=60))
    store.create_flow(flow("cron", interval="*/5 * * * *"))
    store.create_flow(flow("idle"))

    clock.advance(60)
    assert store.overdue_flows() == []
    clock.advance(1)
    assert [f.name for f in store.overdue_flows()] == ["late"]
    assert store.overdue_flows(grace_seconds=120) == []
    clock.set(FIVE_PAST + timedelta(seconds=61))
    assert [f.name for f in store.flows.overdue(grace_seconds=60)] == ["cron", "late"]


def test_count_by_status_counts_active_and_paused_flows(store: Store) -> None:
    assert store.flows.count_by_status() == {}
    for name in ("a", "b", "c"):
        store.create_flow(flow(name))
    store.pause("c")

    assert store.flows.count_by_status() == {"active": 2, "paused": 1}


# == runs: claims ========================================================================
def test_claim_due_claims_due_runs_oldest_due_first(store: Store, clock: Clock) -> None:
    store.create_flow(flow("cron", interval="*/5 * * * *"))  # first run, due at 10:05
    store.create_flow(flow("now", interval=60))              # second run, due at 10:00:30
    clock.set(FIVE_PAST + timedelta(minutes=1))
    store.create_flow(flow("later", interval=60))            # third run, due at 10:06

    first = store.runs.claim_due("w1", limit=2)
    assert [c.flow.name for c in first] == ["now", "cron"]
    assert [c.flow.name for c in store.runs.claim_due("w2")] == ["later"]
    assert store.runs.claim_due("w3") == []


def test_claim_due_leaves_runs_not_yet_due(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval="*/5 * * * *"))

    assert store.runs.claim_due("w1") == []
    [run] = pending(store, "a")
    assert (run.status, run.worker_id, run.attempt) == ("pending", None, 0)
    clock.set(FIVE_PAST)
    assert claim_of(store, "a").run_id == run.id


def test_a_claim_starts_the_run_and_leases_it(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    store.reset_cursor("a", 3)

    claim = claim_of(store, "a")

    assert (claim.worker_id, claim.attempt, claim.trigger, claim.cursor, claim.counts) == (
        "w1", 1, "schedule", 3, RunCounts())
    assert claim.token
    assert (claim.flow.name, claim.flow.running_run_id) == ("a", claim.run_id)
    run = store.get_run(claim.run_id)
    assert (run.status, run.worker_id, run.attempt, run.cursor_start) == (
        "running", "w1", 1, 3)
    assert (run.started_at, run.heartbeat_at, run.lease_expires_at) == (
        T0, T0, T0 + timedelta(seconds=LEASE))
    record = store.get_flow("a")
    assert (record.running_run_id, record.next_run_at) == (claim.run_id, None)


def test_a_run_is_never_claimed_twice(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")

    assert store.runs.claim_due("w2") == []
    assert store.runs.claim(claim.run_id, "w2") is None


def test_claim_by_id_takes_a_pending_run_due_or_not(store: Store) -> None:
    store.create_flow(flow("a", interval="*/5 * * * *"))
    [run] = pending(store, "a")

    claim = store.runs.claim(run.id, "w2")

    assert claim is not None
    assert (claim.run_id, claim.worker_id, claim.attempt, claim.flow.name) == (
        run.id, "w2", 1, "a")
    assert store.runs.claim(run.id, "w3") is None
    ok(store, claim)
    assert store.runs.claim(run.id, "w3") is None
    assert store.runs.claim(999_999, "w3") is None


def test_adopt_takes_over_a_claim_presenting_its_token(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    clock.advance(10)

    assert store.runs.adopt(claim.run_id, "wrong", "w2") is None
    adopted = store.runs.adopt(claim.run_id, claim.token, "w2")

    assert adopted is not None
    assert (adopted.run_id, adopted.token, adopted.worker_id, adopted.flow.name) == (
        claim.run_id, claim.token, "w2", "a")
    run = store.get_run(claim.run_id)
    assert (run.worker_id, run.lease_expires_at) == ("w2", clock.now + timedelta(seconds=LEASE))
    ok(store, adopted)
    assert store.runs.adopt(claim.run_id, claim.token, "w3") is None


def test_dispatched_gives_the_claim_while_it_holds(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    store.reset_cursor("a", 5)
    claim = claim_of(store, "a")

    found = store.runs.dispatched(claim.run_id, claim.token)

    assert found is not None
    assert (found.run_id, found.token, found.worker_id, found.attempt, found.trigger,
            found.cursor, found.flow.name) == (claim.run_id, claim.token, "w1", 1, "schedule",
                                               5, "a")
    assert store.runs.dispatched(claim.run_id, "wrong") is None
    store.runs.release(claim, reason="back")
    assert store.runs.dispatched(claim.run_id, claim.token) is None


def test_hold_dispatched_stretches_the_lease_while_queued(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")

    assert store.runs.hold_dispatched(claim, 600)
    assert store.get_run(claim.run_id).lease_expires_at == T0 + timedelta(seconds=600)
    clock.advance(LEASE + 1)
    assert store.runs.reclaim_expired() == []
    ok(store, claim)
    assert not store.runs.hold_dispatched(claim, 600)


def test_renew_extends_leases_and_names_the_runs_lost(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    store.create_flow(flow("b", interval=60))
    a, b = store.runs.claim_due("w1")
    assert store.runs.renew([]) == set()

    clock.advance(LEASE - 1)
    assert store.runs.renew([a]) == set()
    assert store.get_run(a.run_id).lease_expires_at == clock.now + timedelta(seconds=LEASE)
    clock.advance(2)
    assert store.runs.reclaim_expired() == [b.run_id]
    assert store.runs.renew([a, b]) == {b.run_id}


def test_begin_attempt_gives_the_cursor_and_the_counts_so_far(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    store.reset_cursor("a", 1)
    claim = claim_of(store, "a")
    store.runs.checkpoint(claim, 4)
    store.runs.progress(claim, RunCounts(read=4, written=3, skipped=1, batches=2))
    clock.advance(5)

    cursor, counts = store.runs.begin_attempt(claim, 2)

    assert (cursor, counts) == (4, RunCounts(read=4, written=3, skipped=1, batches=2))
    run = store.get_run(claim.run_id)
    assert (run.attempt, run.cursor_start, run.heartbeat_at) == (2, 1, clock.now)
    store.runs.release(claim, reason="stop")
    with pytest.raises(RunClaimLost):
        store.runs.begin_attempt(claim, 3)


def test_progress_records_counts_and_notes_while_held(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    clock.advance(3)

    assert store.runs.progress(claim, RunCounts(read=5, written=4, failed=1, batches=1),
                               error="attempt 1 failed", error_type="x.Transient")

    run = store.get_run(claim.run_id)
    assert (run.read, run.written, run.skipped, run.failed, run.batches) == (5, 4, 0, 1, 1)
    assert (run.error, run.error_type) == ("attempt 1 failed", "x.Transient")
    assert (run.heartbeat_at, run.lease_expires_at) == (
        clock.now, clock.now + timedelta(seconds=LEASE))
    store.runs.release(claim, reason="stop")
    assert not store.runs.progress(claim, RunCounts(read=99))
    assert store.get_run(claim.run_id).read == 5


def test_a_checkpoint_moves_the_flow_cursor(store: Store, clock: Clock) -> None:
    record = store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    clock.advance(2)

    store.runs.checkpoint(claim, {"id": 3})

    run = store.get_run(claim.run_id)
    assert (run.cursor_start, run.cursor_end) == (None, {"id": 3})
    assert run.lease_expires_at == clock.now + timedelta(seconds=LEASE)
    flow_now = store.get_flow("a")
    assert (flow_now.cursor, flow_now.cursor_updated_at) == ({"id": 3}, clock.now)
    assert store.flows.cursor(record.id) == {"id": 3}


def test_a_checkpoint_after_a_release_is_refused(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    store.runs.checkpoint(claim, 1)
    store.runs.release(claim, reason="stop")

    with pytest.raises(RunClaimLost):
        store.runs.checkpoint(claim, 2)
    assert store.get_flow("a").cursor == 1


def test_a_reclaimed_holder_is_fenced_off(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=3600))
    old = claim_of(store, "a", "old")
    store.runs.checkpoint(old, 10)
    clock.advance(LEASE + 1)
    store.runs.reclaim_expired()
    new = claim_of(store, "a", "new")
    store.runs.checkpoint(new, 20)

    with pytest.raises(RunClaimLost, match="'old'"):
        store.runs.checkpoint(old, 15)
    with pytest.raises(RunClaimLost):
        ok(store, old, RunCounts(read=99))
    assert not store.runs.progress(old, RunCounts(read=99))
    assert store.runs.renew([old, new]) == {old.run_id}
    assert store.runs.release(old, reason="late") is None
    assert store.runs.adopt(old.run_id, old.token, "old") is None
    assert store.get_flow("a").cursor == 20
    assert store.get_run(new.run_id).status == "running"
    assert store.get_run(old.run_id).error_type == "active_data_flow.errors.WorkerLost"


# == runs: ending ========================================================================
def test_finish_records_the_run_and_schedules_the_next_one(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    clock.advance(5)

    record = ok(store, claim, RunCounts(read=3, written=2, skipped=1, batches=1),
                duration_s=2.5)

    assert (record.id, record.status, record.ended_at, record.duration_s) == (
        claim.run_id, "succeeded", clock.now, 2.5)
    assert (record.read, record.written, record.skipped, record.failed, record.batches) == (
        3, 2, 1, 0, 1)
    assert (record.lease_expires_at, record.error, record.error_type, record.traceback) == (
        None, None, None, None)
    assert store.get_run(claim.run_id) == record
    state = store.get_flow("a")
    assert (state.last_run_id, state.last_run_status, state.last_run_at, state.last_error) == (
        claim.run_id, "succeeded", clock.now, None)
    assert (state.running_run_id, state.next_run_at) == (None, T0 + timedelta(seconds=60))
    assert [r.trigger for r in pending(store, "a")] == ["schedule"]


def test_a_late_run_keeps_the_cadence_without_a_burst(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    clock.advance(250)  # four slots missed

    ok(store, claim_of(store, "a"))

    assert store.get_flow("a").next_run_at == T0 + timedelta(seconds=300)
    assert len(pending(store, "a")) == 1


def test_finishing_a_cron_run_schedules_the_next_cron_time(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval="*/5 * * * *"))
    clock.set(FIVE_PAST)
    claim = claim_of(store, "a")
    clock.advance(7 * 60)

    store.runs.finish(claim, RunStatus.FAILED, RunCounts(), error="boom")

    assert store.get_flow("a").next_run_at == FIVE_PAST + timedelta(minutes=10)


def test_a_failure_records_the_error_type_message_and_traceback(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    try:
        raise ValueError("bad row 7")
    except ValueError as exc:
        error = exc

    record = store.runs.finish(claim, RunStatus.FAILED, RunCounts(read=7), error=error)

    assert (record.status, record.error_type, record.error) == (
        "failed", "builtins.ValueError", "bad row 7")
    assert "Traceback" in (record.traceback or "")
    assert "ValueError: bad row 7" in (record.traceback or "")
    state = store.get_flow("a")
    assert (state.last_run_status, state.last_error) == ("failed", "bad row 7")
    assert len(pending(store, "a")) == 1  # a failed run is followed by the next one


def test_a_run_errors_type_is_that_of_its_cause(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    error = FlowRunError("ConnectorTimeout: gone (flow 'a' failed)", flow="a")
    error.__cause__ = ConnectorTimeout("gone")

    record = store.runs.finish(claim, RunStatus.FAILED, RunCounts(), error=error)

    assert (record.error_type, record.error, record.traceback) == (
        "active_data_flow.errors.ConnectorTimeout", "ConnectorTimeout: gone (flow 'a' failed)",
        None)


def test_a_string_error_has_no_type_and_a_code_error_lands_on_the_flow(store: Store) -> None:
    store.create_flow(flow("a", interval=60))

    record = store.runs.finish(claim_of(store, "a"), RunStatus.FAILED, RunCounts(),
                               error="cannot load", code_error="ImportError: app")

    assert (record.error_type, record.error, record.traceback) == (None, "cannot load", None)
    assert store.get_flow("a").code_error == "ImportError: app"
    store.trigger("a")
    ok(store, claim_of(store, "a"))
    assert store.get_flow("a").code_error is None


def test_finish_refuses_a_status_that_is_not_final(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")

    for status in (RunStatus.PENDING, RunStatus.RUNNING):
        with pytest.raises(ConfigurationError) as caught:
            store.runs.finish(claim, status, RunCounts())
        assert caught.value.option == "status"
    assert store.get_run(claim.run_id).status == "running"


def test_a_success_queues_the_flows_it_triggers_in_the_same_call(
    store: Store, clock: Clock
) -> None:
    store.create_flow(flow("a", interval=3600, triggers=["b", "c", "paused", "gone"]))
    store.create_flow(flow("b"))
    store.create_flow(flow("c", interval="*/5 * * * *"))
    store.create_flow(flow("paused", interval=60), paused=True)
    [c_run] = pending(store, "c")
    claim = claim_of(store, "a")
    clock.advance(3)

    ok(store, claim)

    [b_run] = pending(store, "b")
    assert (b_run.trigger, b_run.due_at) == ("chain", clock.now)
    assert [(r.id, r.trigger, r.due_at) for r in pending(store, "c")] == [
        (c_run.id, "chain", clock.now)]
    assert store.list_runs("paused").total == 0


def test_a_failure_or_a_cancellation_triggers_nothing(store: Store) -> None:
    store.create_flow(flow("a", interval=60, triggers=["b"]))
    store.create_flow(flow("b"))

    store.runs.finish(claim_of(store, "a"), RunStatus.FAILED, RunCounts(), error="x")
    store.trigger("a")
    store.runs.finish(claim_of(store, "a"), RunStatus.CANCELLED, RunCounts())

    assert store.list_runs("b").total == 0


def test_a_chained_trigger_of_a_running_flow_runs_it_again_after(store: Store) -> None:
    store.create_flow(flow("a", triggers=["b"]))
    store.create_flow(flow("b"))
    store.trigger("b")
    b = claim_of(store, "b")
    store.trigger("a")
    ok(store, claim_of(store, "a"))

    assert store.get_flow("b").rerun_requested
    ok(store, b)
    assert [r.trigger for r in pending(store, "b")] == ["manual"]


def test_release_gives_the_run_back_pending_and_due_now(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval="*/5 * * * *"))
    store.reset_cursor("a", 2)
    [run] = pending(store, "a")
    claim = store.runs.claim(run.id, "w1")
    assert claim is not None
    clock.advance(1)

    released = store.runs.release(claim, RunCounts(read=2, written=2, batches=1),
                                  reason="interrupted: the worker stopped")

    assert released is not None
    assert (released.status, released.due_at, released.error, released.lease_expires_at) == (
        "pending", clock.now, "interrupted: the worker stopped", None)
    assert (released.read, released.written, released.batches) == (2, 2, 1)
    assert store.get_flow("a").next_run_at == clock.now
    again = claim_of(store, "a", "w2")
    assert (again.run_id, again.attempt, again.counts) == (
        run.id, 2, RunCounts(read=2, written=2, batches=1))
    assert store.get_run(run.id).cursor_start == 2


def test_release_cancels_the_run_of_a_paused_flow(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    claim = claim_of(store, "a")
    store.pause("a")

    released = store.runs.release(claim, reason="stopping")

    assert released is not None
    assert (released.status, released.ended_at) == ("cancelled", T0)
    assert store.get_flow("a").running_run_id is None
    assert store.runs.release(claim, reason="again") is None


def test_reclaim_expired_fails_runs_whose_lease_expired_and_queues_recovery(
    store: Store, clock: Clock
) -> None:
    for name in ("a", "b", "c"):
        store.create_flow(flow(name, interval=3600))
    claims = {c.flow.name: c for c in store.runs.claim_due("w1")}
    ok(store, claims["c"])  # terminal: never touched

    clock.advance(LEASE - 1)
    assert store.runs.reclaim_expired() == []
    assert store.runs.renew([claims["b"]]) == set()  # b's worker is alive
    clock.advance(2)  # a's lease expired a second ago
    assert store.runs.reclaim_expired() == [claims["a"].run_id]

    lost = store.get_run(claims["a"].run_id)
    assert (lost.status, lost.error_type, lost.ended_at, lost.lease_expires_at) == (
        "failed", "active_data_flow.errors.WorkerLost", clock.now, None)
    assert "'w1' stopped renewing its lease" in (lost.error or "")
    assert store.get_run(claims["b"].run_id).status == "running"
    assert store.get_run(claims["c"].run_id).status == "succeeded"
    [recovery] = pending(store, "a")
    assert (recovery.trigger, recovery.due_at) == ("recovery", clock.now)
    state = store.get_flow("a")
    assert (state.last_run_id, state.last_run_status, state.last_error) == (
        lost.id, "failed", lost.error)


def test_next_lease_expiry_is_when_the_earliest_running_lease_runs_out(
    store: Store, clock: Clock
) -> None:
    assert store.runs.next_lease_expiry() is None  # nothing running
    for name in ("a", "b"):
        store.create_flow(flow(name, interval=3600))
    claims = {c.flow.name: c for c in store.runs.claim_due("w1")}
    assert store.runs.next_lease_expiry() == clock.now + timedelta(seconds=LEASE)
    clock.advance(3)
    assert store.runs.renew([claims["a"]]) == set()  # a's lease now runs out 3 s after b's
    assert store.runs.next_lease_expiry() == clock.now - timedelta(seconds=3) + timedelta(
        seconds=LEASE)
    ok(store, claims["b"])
    assert store.runs.next_lease_expiry() == clock.now + timedelta(seconds=LEASE)
    ok(store, claims["a"])
    assert store.runs.next_lease_expiry() is None


def test_reclaiming_a_paused_flows_run_queues_a_recovery_only_for_a_rerun(
    store: Store, clock: Clock
) -> None:
    store.create_flow(flow("quiet", interval=60))
    store.create_flow(flow("asked", interval=60))
    store.runs.claim_due("w1")
    store.pause("quiet")
    store.pause("asked")
    store.trigger("asked")  # while running: a rerun is requested

    clock.advance(LEASE + 1)
    assert len(store.runs.reclaim_expired()) == 2

    assert pending(store, "quiet") == []
    assert [r.trigger for r in pending(store, "asked")] == ["recovery"]
    assert store.get_flow("asked").rerun_requested is False


def test_reclaim_expired_takes_the_oldest_leases_first_up_to_its_limit(
    store: Store, clock: Clock
) -> None:
    ids = []
    for name in ("a", "b", "c"):
        store.create_flow(flow(name, interval=60))
        ids.append(claim_of(store, name).run_id)
        clock.advance(1)
    clock.advance(LEASE + 1)

    assert store.runs.reclaim_expired(limit=2) == ids[:2]
    assert store.runs.reclaim_expired(limit=2) == ids[2:]


# == runs: reading =======================================================================
def test_get_of_an_unknown_run_raises_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound):
        store.get_run(999_999)


def test_page_lists_runs_newest_first_by_flow_and_status(store: Store) -> None:
    store.create_flow(flow("a", interval=60))
    store.create_flow(flow("b"))
    ok(store, claim_of(store, "a"))
    store.trigger("a")
    store.runs.finish(claim_of(store, "a"), RunStatus.FAILED, RunCounts(), error="x")
    store.trigger("b")

    everything = store.list_runs()
    ids = [r.id for r in everything.items]
    assert ids == sorted(ids, reverse=True)
    assert (everything.total, everything.total_is_exact) == (4, True)
    assert [(r.flow, r.status) for r in everything.items] == [
        ("b", "pending"), ("a", "pending"), ("a", "failed"), ("a", "succeeded")]
    assert [r.status for r in store.list_runs("a").items] == ["pending", "failed", "succeeded"]
    assert [r.flow for r in store.list_runs(status="pending").items] == ["b", "a"]
    assert [r.status for r in store.list_runs("a", "failed").items] == ["failed"]
    page = store.list_runs("a", offset=1, limit=1)
    assert ([r.status for r in page.items], page.total, page.has_more) == (["failed"], 3, True)


@pytest.mark.parametrize(("options", "option"), [
    ({"status": "lost"}, "status"), ({"limit": 0}, "limit"), ({"offset": -1}, "offset"),
])
def test_run_page_refuses_bad_filters(store: Store, options: dict[str, Any],
                                      option: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store.list_runs(**options)
    assert caught.value.option == option


def test_page_counts_runs_up_to_its_count_limit(store: Store) -> None:
    store.create_flow(flow("a"))
    for _ in range(5):
        store.trigger("a")
        ok(store, claim_of(store, "a"))

    capped = store.list_runs(limit=2, count_limit=3)
    assert (len(capped.items), capped.total, capped.total_is_exact) == (2, 3, False)
    exact = store.list_runs(limit=2, count_limit=5)
    assert (exact.total, exact.total_is_exact) == (5, True)
    everything = store.list_runs(count_limit=None)
    assert (everything.total, everything.total_is_exact, len(everything.items)) == (5, True, 5)


def test_stats_aggregate_the_last_finished_runs(store: Store, clock: Clock) -> None:
    store.create_flow(flow("a", interval=60))
    assert store.flow_stats("a").runs == 0
    clock.advance(1)
    ok(store, claim_of(store, "a"), RunCounts(read=3, written=3, batches=1), duration_s=1.0)
    success_at = clock.now
    clock.advance(60)
    store.runs.finish(claim_of(store, "a"), RunStatus.FAILED,
                      RunCounts(read=2, written=1, skipped=0, failed=1), duration_s=3.0,
                      error="x")
    clock.advance(60)
    store.runs.finish(claim_of(store, "a"), RunStatus.CANCELLED, RunCounts(skipped=4))
    clock.advance(60)
    claim_of(store, "a")  # running: not counted

    stats = store.flow_stats("a")
    assert (stats.flow, stats.window, stats.runs, stats.succeeded, stats.failed,
            stats.cancelled) == ("a", 100, 3, 1, 1, 1)
    assert (stats.read, stats.written, stats.skipped, stats.failed_records) == (5, 4, 4, 1)
    assert (stats.avg_duration_s, stats.max_duration_s) == (2.0, 3.0)
    assert stats.last_success_at == success_at
    last = store.flow_stats("a", window=1)
    assert (last.runs, last.cancelled, last.read, last.avg_duration_s) == (1, 1, 0, None)
    assert last.last_success_at == success_at
    with pytest.raises(ConfigurationError) as caught:
        store.flow_stats("a", window=0)
    assert caught.value.option == "window"


def test_count_live_counts_pending_running_and_overdue_runs(store: Store, clock: Clock) -> None:
    for name in ("a", "b", "c"):
        store.create_flow(flow(name, interval=60))
    store.runs.claim_due("w1", limit=1)
    clock.advance(30)
    store.create_flow(flow("d", interval=60))

    counts = store.runs.count_live(overdue_after=T0 + timedelta(seconds=1))
    assert counts == {"pending": 3, "running": 1, "overdue": 2}


# == partitions ==========================================================================
def part(first: int) -> dict[str, Any]:
    return {"type": "memory", "config": {"records": [{"id": first}, {"id": first + 1}]}}


def partitioned(store: Store, name: str = "p", *, hold: float = 600, **limits: Any
                ) -> tuple[ClaimedRun, list[int]]:
    """A claimed run of a new flow, opened with two parts (cursors None and 1)."""
    store.create_flow(flow(name, interval=60, triggers=["next"]))
    claim = claim_of(store, name)
    ids = store.partitions.open(claim, [(part(0), None), (part(2), 1)], cursor_start=None,
                                hold_seconds=hold, **limits)
    assert ids is not None
    assert len(ids) == 2
    return claim, ids


def claimed(store: Store, partition_id: int, worker: str = "w2") -> ClaimedPartition:
    got = store.partitions.claim(partition_id, worker)
    assert isinstance(got, ClaimedPartition), got
    return got


def test_open_records_a_held_runs_parts_once(store: Store, clock: Clock) -> None:
    claim, ids = partitioned(store)

    parts = store.list_partitions(claim.run_id)
    assert [p.id for p in parts] == ids
    assert [(p.part, p.status, p.cursor_start, p.cursor, p.attempt) for p in parts] == [
        (0, "pending", None, None, 0), (1, "pending", 1, 1, 0)]
    assert parts[1].source == part(2)
    assert (parts[0].run_id, parts[0].flow_id, parts[0].hold_seconds) == (
        claim.run_id, claim.flow.id, 600)
    assert store.get_partition(ids[1]) == parts[1]
    assert store.get_run(claim.run_id).lease_expires_at == T0 + timedelta(seconds=600)

    again = store.partitions.open(claim, [(part(9), None)], cursor_start=None, hold_seconds=600)
    assert again == ids
    first = claimed(store, ids[0])
    store.partitions.finish(first, RunStatus.SUCCEEDED, RunCounts(read=2))
    assert store.partitions.open(claim, [], cursor_start=None, hold_seconds=600) == [ids[1]]
    store.runs.release(claim, reason="gone")
    assert store.partitions.open(claim, [], cursor_start=None, hold_seconds=600) is None


def test_a_part_claim_starts_the_part_and_pushes_the_runs_lease(
    store: Store, clock: Clock
) -> None:
    claim, ids = partitioned(store)
    clock.advance(10)

    got = claimed(store, ids[1])

    assert (got.partition_id, got.run_id, got.part, got.run_token, got.worker_id) == (
        ids[1], claim.run_id, 1, claim.token, "w2")
    assert (got.attempt, got.source, got.cursor, got.counts, got.hold_seconds) == (
        1, part(2), 1, RunCounts(), 600)
    assert got.token
    assert got.token != claim.token
    assert got.flow.name == "p"
    record = store.get_partition(ids[1])
    assert (record.status, record.worker_id, record.attempt, record.started_at) == (
        "running", "w2", 1, clock.now)
    assert record.lease_expires_at == clock.now + timedelta(seconds=LEASE)
    assert store.get_run(claim.run_id).lease_expires_at == clock.now + timedelta(seconds=600)


def test_a_held_part_is_busy_until_its_lease_expires(store: Store, clock: Clock) -> None:
    _claim, ids = partitioned(store)
    first = claimed(store, ids[0], "w2")

    busy = store.partitions.claim(ids[0], "w3")
    assert isinstance(busy, PartitionBusy)
    assert busy.retry_in == pytest.approx(LEASE + 0.2)
    assert "w2" in busy.reason
    assert busy.flow.name == "p"

    clock.advance(LEASE + 1)
    second = claimed(store, ids[0], "w3")
    assert (second.attempt, second.worker_id) == (2, "w3")
    assert second.token != first.token
    with pytest.raises(RunClaimLost):
        store.partitions.checkpoint(first, 1)
    assert store.partitions.renew([first, second]) == {ids[0]}


def test_a_flows_concurrency_limit_holds_its_parts_back(store: Store) -> None:
    _claim, ids = partitioned(store, concurrency_limit=1)
    first = claimed(store, ids[0])

    busy = store.partitions.claim(ids[1], "w3")
    assert isinstance(busy, PartitionBusy)
    assert "flow at its concurrency limit (1 of 1 running)" in busy.reason
    assert busy.retry_in == pytest.approx(0.5)
    store.partitions.finish(first, RunStatus.SUCCEEDED, RunCounts())
    assert isinstance(store.partitions.claim(ids[1], "w3"), ClaimedPartition)


def test_a_groups_concurrency_limit_spans_flows(store: Store) -> None:
    _one, one = partitioned(store, "one", concurrency_group="g", group_limit=1)
    _two, two = partitioned(store, "two", concurrency_group="g", group_limit=1)
    held = claimed(store, one[0])

    busy = store.partitions.claim(two[0], "w3")
    assert isinstance(busy, PartitionBusy)
    assert "group 'g'" in busy.reason
    store.partitions.retry(held, RunCounts(), error="later")
    assert isinstance(store.partitions.claim(two[0], "w3"), ClaimedPartition)


def test_the_parts_of_an_ended_run_are_void(store: Store, clock: Clock) -> None:
    claim, ids = partitioned(store, hold=60)
    clock.advance(61)
    assert store.runs.reclaim_expired() == [claim.run_id]

    assert store.partitions.claim(ids[0], "w2") is None
    void = store.get_partition(ids[0])
    assert (void.status, void.ended_at) == ("cancelled", clock.now)
    assert "its run ended or was reclaimed" in (void.error or "")
    assert store.partitions.claim(ids[0], "w2") is None
    assert store.partitions.claim(999_999, "w2") is None


def test_part_renewals_extend_the_part_and_its_run(store: Store, clock: Clock) -> None:
    claim, ids = partitioned(store)
    got = claimed(store, ids[0])
    clock.advance(20)

    assert store.partitions.renew([got]) == set()
    assert store.partitions.renew([]) == set()

    assert store.get_partition(ids[0]).lease_expires_at == clock.now + timedelta(seconds=LEASE)
    assert store.get_run(claim.run_id).lease_expires_at == clock.now + timedelta(seconds=600)
    store.runs.release(claim, reason="gone")
    assert store.partitions.renew([got]) == {ids[0]}


def test_part_checkpoints_and_progress_are_fenced(store: Store, clock: Clock) -> None:
    _claim, ids = partitioned(store)
    got = claimed(store, ids[0])

    store.partitions.checkpoint(got, 0)
    assert store.partitions.progress(got, RunCounts(read=1, written=1, batches=1))

    record = store.get_partition(ids[0])
    assert (record.cursor, record.read, record.written, record.batches) == (0, 1, 1, 1)
    assert store.get_flow("p").cursor is None  # a part's cursor is its own
    clock.advance(LEASE + 1)
    claimed(store, ids[0], "w3")  # taken over
    with pytest.raises(RunClaimLost):
        store.partitions.checkpoint(got, 1)
    assert not store.partitions.progress(got, RunCounts(read=2))
    assert not store.partitions.retry(got, RunCounts(read=2), error="x")
    with pytest.raises(RunClaimLost):
        store.partitions.finish(got, RunStatus.SUCCEEDED, RunCounts(read=2))
    assert store.get_partition(ids[0]).cursor == 0


def test_a_retried_part_resumes_from_its_checkpoint(store: Store) -> None:
    _claim, ids = partitioned(store)
    got = claimed(store, ids[1])
    store.partitions.checkpoint(got, 2)

    assert store.partitions.retry(got, RunCounts(read=1, batches=1), error="timed out",
                                  error_type="x.Timeout")

    record = store.get_partition(ids[1])
    assert (record.status, record.error, record.error_type, record.lease_expires_at) == (
        "pending", "timed out", "x.Timeout", None)
    again = claimed(store, ids[1], "w3")
    assert (again.cursor, again.counts, again.attempt) == (2, RunCounts(read=1, batches=1), 2)


def test_the_last_part_ends_the_run_at_the_furthest_checkpoint(
    store: Store, clock: Clock
) -> None:
    store.create_flow(flow("next"))
    claim, ids = partitioned(store)
    first, second = claimed(store, ids[0]), claimed(store, ids[1])
    store.partitions.checkpoint(first, 1)
    store.partitions.checkpoint(second, 3)
    clock.advance(5)

    outcome = store.partitions.finish(second, RunStatus.SUCCEEDED,
                                      RunCounts(read=2, written=2, batches=1), duration_s=1.5)
    assert outcome.run is None
    assert (outcome.partition.status, outcome.partition.duration_s) == ("succeeded", 1.5)
    assert store.get_run(claim.run_id).read == 2  # the counts so far
    clock.advance(5)
    outcome = store.partitions.finish(first, RunStatus.SUCCEEDED,
                                      RunCounts(read=2, written=1, skipped=1, batches=1))

    run = outcome.run
    assert run is not None
    assert (run.id, run.status, run.cursor_end, run.ended_at) == (
        claim.run_id, "succeeded", 3, clock.now)
    assert (run.read, run.written, run.skipped, run.batches) == (4, 3, 1, 2)
    assert run.duration_s == 10.0
    state = store.get_flow("p")
    assert (state.cursor, state.last_run_status, state.running_run_id) == (3, "succeeded", None)
    assert state.next_run_at == T0 + timedelta(seconds=60)
    assert [r.trigger for r in pending(store, "next")] == ["chain"]


def test_a_failed_part_fails_the_run_once_the_others_end(store: Store) -> None:
    store.create_flow(flow("next"))
    _claim, ids = partitioned(store)
    first, second = claimed(store, ids[0]), claimed(store, ids[1])
    store.partitions.checkpoint(second, 3)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        error = exc

    outcome = store.partitions.finish(first, RunStatus.FAILED, RunCounts(read=1), error=error)
    assert outcome.run is None
    assert (outcome.partition.error_type, outcome.partition.error) == (
        "builtins.ValueError", "boom")
    outcome = store.partitions.finish(second, RunStatus.SUCCEEDED, RunCounts(read=2))

    run = outcome.run
    assert run is not None
    assert (run.status, run.error_type, run.cursor_end, run.read) == (
        "failed", "builtins.ValueError", None, 3)
    assert run.error == "1 of 2 partition(s) failed (0); partition 0: boom"
    assert "ValueError: boom" in (run.traceback or "")
    state = store.get_flow("p")
    assert (state.cursor, state.last_run_status, state.last_error) == (None, "failed", run.error)
    assert pending(store, "next") == []


def test_a_part_of_a_reclaimed_run_ends_alone(store: Store, clock: Clock) -> None:
    claim, ids = partitioned(store, hold=60)
    got = claimed(store, ids[0])
    clock.advance(61)
    store.runs.reclaim_expired()

    outcome = store.partitions.finish(got, RunStatus.SUCCEEDED, RunCounts(read=2))

    assert (outcome.partition.status, outcome.run) == ("succeeded", None)
    assert store.get_run(claim.run_id).status == "failed"


def test_parts_are_read_by_id_and_by_run(store: Store) -> None:
    with pytest.raises(RunNotFound):
        store.get_partition(999_999)
    assert store.list_partitions(999_999) == []


# == dead letters ========================================================================
def letter(flow_name: str, key: int, **changes: Any) -> dict[str, Any]:
    made = dead_letter(flow_name, Untyped({"id": key}, {"source": "s"}, position=key),
                       ValueError(f"bad {key}"))
    made.update(changes)
    return made


def test_dead_letters_are_kept_listed_newest_first_and_paged(store: Store, clock: Clock) -> None:
    store.dead_letters.add([letter("a", 1, failed_at="2030-01-01T00:00:00Z"),
                            letter("a", 2), letter("b", 3)], 7)
    store.dead_letters.add([], None)
    store.dead_letters.add([letter("a", 4, failed_at=None, message="plain")], None)

    page = store.list_dead_letters("a")
    assert page.total == 3
    newest, second, oldest = page.items
    assert (oldest.flow, oldest.run_id, oldest.position, oldest.error_type, oldest.error) == (
        "a", 7, 1, "builtins.ValueError", "bad 1")
    assert (oldest.message, oldest.metadata) == ({"id": 1}, {"source": "s"})
    assert oldest.failed_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert (oldest.replayed_at, oldest.replay_error, oldest.replay_attempts) == (None, None, 0)
    assert (newest.message, newest.run_id, newest.failed_at) == ({"value": "plain"}, None, T0)
    assert second.position == 2
    paged = store.list_dead_letters("a", offset=1, limit=1)
    assert ([d.id for d in paged.items], paged.has_more) == ([second.id], True)
    assert [d.position for d in store.list_dead_letters("b").items] == [3]
    with pytest.raises(ConfigurationError):
        store.list_dead_letters("a", limit=0)


def test_dead_letters_are_replayed_or_marked_failed(store: Store, clock: Clock) -> None:
    store.dead_letters.add([letter("a", 1), letter("a", 2), letter("a", 3)], None)
    ids = [d.id for d in store.dead_letters.for_replay("a")]
    assert len(ids) == 3
    assert ids == sorted(ids)
    assert [d.id for d in store.dead_letters.for_replay("a", [ids[2], ids[0]])] == [
        ids[0], ids[2]]
    assert [d.id for d in store.dead_letters.for_replay("a", limit=1)] == [ids[0]]
    clock.advance(5)

    store.dead_letters.mark_replayed([ids[0]])
    store.dead_letters.mark_failed({ids[1]: "ValueError: still bad"})
    store.dead_letters.mark_replayed([])
    store.dead_letters.mark_failed({})

    assert [d.id for d in store.dead_letters.for_replay("a")] == [ids[1], ids[2]]
    assert [d.id for d in store.list_dead_letters("a").items] == [ids[2], ids[1]]
    every = {d.id: d for d in store.list_dead_letters("a", include_replayed=True).items}
    assert (every[ids[0]].replayed_at, every[ids[0]].replay_attempts) == (clock.now, 1)
    assert (every[ids[1]].replay_error, every[ids[1]].replay_attempts,
            every[ids[1]].replayed_at) == ("ValueError: still bad", 1, None)
    store.dead_letters.mark_replayed([ids[1]])
    again = store.list_dead_letters("a", include_replayed=True).items
    assert {d.id: (d.replay_error, d.replay_attempts) for d in again}[ids[1]] == (None, 2)


def test_marking_unknown_dead_letters_changes_nothing(store: Store) -> None:
    store.dead_letters.add([letter("a", 1)], None)

    store.dead_letters.mark_replayed([999_999])
    store.dead_letters.mark_failed({999_999: "x"})

    [kept] = store.list_dead_letters("a", include_replayed=True).items
    assert (kept.replayed_at, kept.replay_attempts) == (None, 0)


def test_dead_letters_are_discarded_by_flow_and_id_replayed_ones_kept(store: Store) -> None:
    store.dead_letters.add([letter("a", 1), letter("a", 2), letter("a", 3),
                            letter("b", 4)], None)
    first, second, third = (d.id for d in store.dead_letters.for_replay("a"))
    [other] = (d.id for d in store.dead_letters.for_replay("b"))
    store.dead_letters.mark_replayed([first])

    # Another flow's letter, a replayed one and an unknown id are left alone.
    assert store.dead_letters.discard("a", [second, other, first, 999_999]) == 1
    assert [d.id for d in store.list_dead_letters("a", include_replayed=True).items] == [
        third, first]
    assert store.dead_letters.discard("a") == 1
    assert [d.id for d in store.list_dead_letters("a", include_replayed=True).items] == [first]
    assert store.dead_letters.discard("a", []) == 0
    assert [d.id for d in store.list_dead_letters("b").items] == [other]


# == workers =============================================================================
def test_beats_are_recorded_per_caller(store: Store, clock: Clock) -> None:
    assert store.last_heartbeat() is None
    assert store.list_workers() == []

    store.workers.record_beat("host-1:123", 2)
    clock.advance(10)
    store.workers.record_beat("plain", 0)
    clock.advance(10)
    store.workers.record_beat("host-1:123", 0)

    first, second = store.list_workers()
    assert (first.id, first.hostname, first.pid, first.beats, first.last_claimed) == (
        "host-1:123", "host-1", 123, 2, 0)
    assert (first.started_at, first.last_beat_at) == (T0, clock.now)
    assert (second.id, second.hostname, second.pid, second.beats) == (
        "plain", socket.gethostname(), os.getpid(), 1)
    assert store.last_heartbeat() == clock.now
    assert [w.id for w in store.list_workers(seen_within=5)] == ["host-1:123"]
    assert store.workers.last_beat() == clock.now


# == the facade ==========================================================================
@pytest.mark.parametrize(("change", "option"), [
    ({"source": {"type": "nope"}}, "type"),
    ({"sink": {"type": "memory", "config": {"bogus": 1}}}, "bogus"),
    ({"sink": None}, "sink"),
    ({"runtime": {"type": "heartbeat", "config": {"interval": "61 * * * *"}}}, "interval"),
    ({"runtime": {"type": "heartbeat", "config": {"interval": -1}}}, "interval"),
    ({"runtime": {"type": "heartbeat", "config": {"interval": "* * * * *",
                                                  "timezone": "Mars/Base"}}}, "timezone"),
    ({"runtime": {"type": "nope"}}, "type"),
    ({"batch_size": 0}, "batch_size"),
    ({"name": "../etc"}, "name"),
    ({"on_error": "dead_letter"}, "dead_letter_sink"),
])
def test_create_flow_names_the_option_at_fault(store: Store, change: dict[str, Any],
                                               option: str) -> None:
    spec = {k: v for k, v in {**flow("a", interval=60), **change}.items() if v is not None}

    with pytest.raises(ConfigurationError) as caught:
        store.create_flow(spec)

    assert caught.value.option == option
    assert store.list_flows().total == 0
    assert store.list_runs().total == 0


@pytest.mark.parametrize(("change", "option"), [
    ({"on_error": "dead_letter",
      "dead_letter_sink": {"type": "dead_letters", "config": {"database": "sqlite:///x.db"}}},
     "database"),
    ({"source": {"type": "jsonl", "config": {"path": "/etc/passwd"}}}, "path"),
])
def test_create_flow_checks_specs_as_untrusted(store: Store, change: dict[str, Any],
                                               option: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store.create_flow({**flow("a"), **change})

    assert caught.value.option == option
    assert store.list_flows().total == 0


def test_create_flow_takes_a_flow_spec(store: Store) -> None:
    spec = FlowSpec.parse(flow("a", interval=60, triggers=["b"]))

    record = store.create_flow(spec)

    assert record.spec.triggers == ("b",)
    assert record.spec.runtime.to_dict() == {"type": "heartbeat",
                                             "config": {"interval": 60.0}}


def test_metrics_gauge_flows_runs_and_the_last_heartbeat(store: Store, clock: Clock) -> None:
    assert store.metrics() == {
        "flows_active": 0, "flows_paused": 0, "runs_pending": 0, "runs_running": 0,
        "runs_overdue": 0, "last_heartbeat_at": None, "last_heartbeat_age_s": None}
    for name in ("a", "b", "c"):
        store.create_flow(flow(name, interval=60))
    store.pause("c")
    store.runs.claim_due("w1", limit=1)
    store.workers.record_beat("w1", 1)
    clock.advance(61)

    assert store.metrics() == {
        "flows_active": 2, "flows_paused": 1, "runs_pending": 1, "runs_running": 1,
        "runs_overdue": 1, "last_heartbeat_at": T0, "last_heartbeat_age_s": 61.0}


def test_a_store_tells_the_time_of_its_clock(store: Store, clock: Clock) -> None:
    assert store.now() == T0
    assert (store.lease_seconds, store.renew_seconds) == (LEASE, LEASE / 5)
    assert not store.shares_database_with(object())


# == the twin ============================================================================
class Twin:
    """One store under random operations, with the claims it handed out."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs: dict[int, ClaimedRun] = {}
        self.parts: dict[int, ClaimedPartition] = {}
        self.stale: list[ClaimedRun | ClaimedPartition] = []  # their writes must be refused

    def held(self, rnd: random.Random) -> ClaimedRun | None:
        """A claim believed held; now and then one given up already."""
        old = [c for c in self.stale if isinstance(c, ClaimedRun)]
        if old and (not self.runs or rnd.random() < 0.2):
            return rnd.choice(old)
        return self.runs[rnd.choice(sorted(self.runs))] if self.runs else None

    def part(self, rnd: random.Random) -> ClaimedPartition | None:
        old = [c for c in self.stale if isinstance(c, ClaimedPartition)]
        if old and (not self.parts or rnd.random() < 0.2):
            return rnd.choice(old)
        return self.parts[rnd.choice(sorted(self.parts))] if self.parts else None

    def give_up(self, claim: ClaimedRun | ClaimedPartition) -> None:
        if isinstance(claim, ClaimedPartition):
            self.parts.pop(claim.partition_id, None)
        else:
            self.runs.pop(claim.run_id, None)
        if claim not in self.stale:
            self.stale.append(claim)

    def snapshot(self) -> dict[str, Any]:
        """Everything the store shows, in its JSON form (tracebacks aside)."""
        store = self.store
        runs = [r.to_dict() for r in store.list_runs(limit=1000, count_limit=None).items]
        for run in runs:
            run.pop("traceback")
        flows = [f.to_dict() for f in store.list_flows(limit=1000).items]
        return {
            "flows": flows, "runs": runs,
            "parts": [p.to_dict() for r in runs for p in store.list_partitions(r["id"])],
            "letters": [d.to_dict() for f in flows for d in store.list_dead_letters(
                f["name"], include_replayed=True, limit=1000).items],
            "workers": sorted((w.to_dict() for w in store.list_workers()),
                              key=lambda w: w["id"]),
            "metrics": store.metrics(), "overdue": [f.name for f in store.overdue_flows()],
        }


def _act(twin: Twin, action: str, rnd: random.Random, clock: Clock | None) -> Any:
    """Do ``action`` on ``twin``'s store with choices drawn from ``rnd``; what it returned
    (records in their JSON form), or the type of the error it raised."""
    store, name = twin.store, rnd.choice("abcd")
    held, piece = twin.held(rnd), twin.part(rnd)
    counts = RunCounts(read=rnd.randint(0, 5), written=rnd.randint(0, 5))
    result: Any
    try:
        if action == "create":
            interval = rnd.choice([None, 60, 3600, "*/5 * * * *"])
            result = store.create_flow(flow(name, interval=interval,
                                            triggers=rnd.sample("abcd", rnd.randint(0, 2))),
                                       paused=rnd.random() < 0.2)
        elif action == "register":
            result = store.flows.register_code(checked_spec(
                flow(name, interval=rnd.choice([None, 60, "*/5 * * * *"]))))
        elif action == "update":
            result = store.update_flow(name, {"runtime": {"type": "heartbeat", "config": (
                rnd.choice([{}, {"interval": 30}, {"interval": 600}]))}})
        elif action in ("pause", "resume", "trigger"):
            result = getattr(store, action)(name)
        elif action == "reset_cursor":
            result = store.reset_cursor(name, rnd.choice([None, 5, {"k": [1]}]))
        elif action == "advance":
            step = rnd.choice([1, 29, 31, 61, 300])
            if clock is not None:  # the stores share the clock: move it once
                clock.advance(step)
            result = step
        elif action == "claim_due":
            got = store.runs.claim_due(rnd.choice(["w1", "w2"]), limit=rnd.choice([None, 1, 2]))
            twin.runs.update((c.run_id, c) for c in got)
            result = [(c.run_id, c.flow.name, c.attempt, c.cursor, c.counts) for c in got]
        elif action == "claim":
            one = store.runs.claim(rnd.randint(1, 30), "w3")
            if one is not None:
                twin.runs[one.run_id] = one
            result = one and (one.run_id, one.attempt, one.cursor, one.counts)
        elif action == "reclaim_expired":
            result = store.runs.reclaim_expired(limit=rnd.choice([1, 100]))
            for run_id in result:
                if run_id in twin.runs:
                    twin.give_up(twin.runs[run_id])
        elif action == "record_beat":
            result = store.workers.record_beat(f"host:{rnd.randint(1, 3)}", rnd.randint(0, 3))
        elif action == "dead_letters":
            store.dead_letters.add([letter(name, rnd.randint(1, 9))], None)
            ids = [d.id for d in store.dead_letters.for_replay(name)]
            if rnd.random() < 0.5:
                store.dead_letters.mark_replayed(ids[:1])
            else:
                store.dead_letters.mark_failed(dict.fromkeys(ids[-1:], "again"))
            result = ids
        elif action == "pclaim":
            got = store.partitions.claim(rnd.randint(1, 6), "w5")
            if isinstance(got, ClaimedPartition):
                twin.parts[got.partition_id] = got
                result = (got.partition_id, got.attempt, got.cursor, got.counts)
            else:
                result = got and (got.retry_in, got.reason)
        elif held is None or (action in ("pretry", "pfinish") and piece is None):
            result = "nothing held"
        elif action == "finish":
            result = store.runs.finish(
                held, rnd.choice([RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED,
                                  RunStatus.CANCELLED]),
                counts, duration_s=1.5, error=rnd.choice([None, "boom"]))
            twin.give_up(held)
        elif action == "release":
            result = store.runs.release(held, counts, reason="stopping")
            twin.give_up(held)
        elif action == "checkpoint":
            result = store.runs.checkpoint(held, rnd.randint(0, 99))
        elif action == "progress":
            result = store.runs.progress(held, counts, error=rnd.choice([None, "note"]))
        elif action == "renew":
            result = store.runs.renew([held])
        elif action == "adopt":
            result = store.runs.adopt(held.run_id, held.token, "w4")
            if result is not None:
                twin.runs[held.run_id] = result
            result = result and (result.worker_id, result.counts)
        elif action == "begin_attempt":
            result = store.runs.begin_attempt(held, held.attempt + 1)
        elif action == "open":
            result = store.partitions.open(
                held, [(part(0), None), (part(2), 1)], cursor_start=None,
                hold_seconds=rnd.choice([20, 100]), concurrency_limit=rnd.choice([None, 1]),
                concurrency_group=rnd.choice([None, "g"]), group_limit=rnd.choice([None, 1]))
        else:
            assert piece is not None
            if action == "pretry":
                result = store.partitions.retry(piece, counts, error="later")
            else:
                if rnd.random() < 0.5:
                    store.partitions.checkpoint(piece, rnd.randint(0, 9))
                outcome = store.partitions.finish(
                    piece, rnd.choice([RunStatus.SUCCEEDED, RunStatus.FAILED]), counts,
                    error=rnd.choice([None, "part failed"]))
                twin.give_up(piece)
                result = (outcome.partition, outcome.run)
    except Exception as exc:  # the same error on both, or a difference to report
        if isinstance(exc, RunClaimLost):
            lost = piece if action in ("pretry", "pfinish") else held
            if lost is not None:
                twin.give_up(lost)
        return type(exc).__name__
    return _plain(result)


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        made = value.to_dict()
        made.pop("traceback", None)
        return made
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


ACTIONS = (
    "create", "create", "register", "update", "pause", "resume", "trigger", "reset_cursor",
    "advance", "advance", "claim_due", "claim_due", "claim", "reclaim_expired", "record_beat",
    "dead_letters", "finish", "finish", "release", "checkpoint", "progress", "renew", "adopt",
    "begin_attempt", "open", "pclaim", "pclaim", "pretry", "pfinish",
)


@pytest.mark.parametrize("seed", range(6))
def test_the_memory_store_answers_like_the_sql_store(seed: int,
                                                     make_database: Callable[[str], str]
                                                     ) -> None:
    """Random operations on a memory store and on a SQLite store sharing one clock: every
    call returns the same, and afterwards both show the same flows, runs, parts, dead
    letters, workers and gauges."""
    clock = Clock()
    memory = Twin(MemoryStore(clock=clock, lease_seconds=LEASE))
    sql = Twin(FlowStore(make_database("sqlite"), auto_upgrade=True, clock=clock,
                         lease_seconds=LEASE))
    try:
        plan = random.Random(seed)
        for step in range(150):
            action = plan.choice(ACTIONS)
            draw = plan.random()
            got = [_act(twin, action, random.Random(draw), clock if twin is memory else None)
                   for twin in (memory, sql)]
            assert got[0] == got[1], f"step {step}: {action} answered differently"
            assert memory.snapshot() == sql.snapshot(), f"step {step}: after {action}"
    finally:
        sql.store.close()
