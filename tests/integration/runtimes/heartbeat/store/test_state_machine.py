"""A Hypothesis state machine over the store's run life cycle.

Rules create flows, claim, checkpoint, renew, finish, fail, release, pause, resume, trigger,
let time pass and reclaim, in any order, with stale claims kept around. After every step:

* at most one pending-or-running run per flow;
* a run is running exactly when it holds a claim token and a lease;
* ``ended_at`` is set exactly on terminal runs, and terminal runs never change again;
* a paused flow has no pending run; an active scheduled flow that is not running has one;
* a flow's cursor never moves backwards, and only a live claim moves it;
* writes through a claim that is no longer held raise ``RunClaimLost`` and change nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import hypothesis.strategies as st
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from active_data_flow.errors import RunClaimLost
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedRun,
    FlowStore,
    RunCounts,
    RunStatus,
    models,
)
from tests.integration.runtimes.heartbeat.conftest import Clock, memory_flow

LEASE = 60.0
SCHEDULES: list[Any] = [None, 30, 3600, "*/5 * * * *"]


class RunLifeCycle(RuleBasedStateMachine):
    url: str = ""  # set by the test: a migrated database, emptied for each example
    store: FlowStore
    clock: Clock

    flows = Bundle("flows")
    claims = Bundle("claims")

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = FlowStore(self.url, lease_seconds=LEASE, clock=self.clock)
        with self.store.engine.begin() as conn:
            for table in (models.runs, models.flows, models.workers):
                conn.execute(table.delete())
        self.terminal: dict[int, tuple[str, datetime | None]] = {}
        self.cursors: dict[str, int] = {}
        self.count = 0

    def teardown(self) -> None:
        self.store.close()

    # -- rules ---------------------------------------------------------------------------
    @rule(target=flows, schedule=st.sampled_from(SCHEDULES))
    def create(self, schedule: Any) -> str:
        self.count += 1
        name = f"f{self.count}"
        config = {} if schedule is None else {"interval": schedule}
        self.store.create_flow(memory_flow(name, [], "sm", **config))
        return name

    @rule(target=claims, worker=st.sampled_from(["w1", "w2"]))
    def claim(self, worker: str) -> Any:
        claimed = self.store.runs.claim_due(worker)
        return claimed[0] if claimed else None

    @rule(claim=claims, step=st.integers(1, 5))
    def checkpoint(self, claim: ClaimedRun | None, step: int) -> None:
        if claim is None:
            return
        cursor = self.cursors.get(claim.flow.name, 0) + step
        if self._held(claim):
            self.store.runs.checkpoint(claim, cursor)
            self.cursors[claim.flow.name] = cursor
        else:
            with pytest.raises(RunClaimLost):
                self.store.runs.checkpoint(claim, cursor)

    @rule(claim=claims, outcome=st.sampled_from([RunStatus.SUCCEEDED, RunStatus.FAILED,
                                                 RunStatus.CANCELLED]))
    def finish(self, claim: ClaimedRun | None, outcome: RunStatus) -> None:
        if claim is None:
            return
        if self._held(claim):
            record = self.store.runs.finish(claim, outcome, RunCounts(read=1), error=(
                None if outcome == RunStatus.SUCCEEDED else "it went wrong"))
            assert record.status == outcome.value
        else:
            with pytest.raises(RunClaimLost):
                self.store.runs.finish(claim, outcome, RunCounts())

    @rule(claim=claims)
    def release(self, claim: ClaimedRun | None) -> None:
        if claim is None:
            return
        held = self._held(claim)
        record = self.store.runs.release(claim, reason="stopping")
        assert (record is not None) == held

    @rule(claim=claims)
    def renew(self, claim: ClaimedRun | None) -> None:
        if claim is not None:
            lost = self.store.runs.renew([claim])
            assert (claim.run_id in lost) == (not self._held(claim))

    @rule(flow=flows)
    def pause(self, flow: str) -> None:
        self.store.pause(flow)

    @rule(flow=flows)
    def resume(self, flow: str) -> None:
        self.store.resume(flow)

    @rule(flow=flows)
    def trigger(self, flow: str) -> None:
        run = self.store.trigger(flow)
        assert run.status in ("pending", "running")

    @rule(seconds=st.sampled_from([1, 29, 61, 301, 3601]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def reclaim(self) -> None:
        for run_id in self.store.runs.reclaim_expired():
            assert self.store.get_run(run_id).error_type == "active_data_flow.errors.WorkerLost"

    # -- helpers and invariants ----------------------------------------------------------
    def _held(self, claim: ClaimedRun) -> bool:
        runs = models.runs
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).where(
                runs.c.id == claim.run_id, runs.c.status == "running",
                runs.c.claim_token == claim.token)).scalar_one() == 1

    @invariant()
    def consistent(self) -> None:
        with self.store.engine.connect() as conn:
            runs = conn.execute(sa.select(
                models.runs.c.id, models.runs.c.flow_id, models.runs.c.status,
                models.runs.c.claim_token, models.runs.c.lease_expires_at,
                models.runs.c.ended_at, models.runs.c.trigger)).all()
            flows = conn.execute(sa.select(models.flows.c.id, models.flows.c.name,
                                           models.flows.c.status, models.flows.c.cursor)).all()
        live: dict[int, list[Any]] = {}
        for run_id, flow_id, status, token, lease, ended, trigger in runs:
            # Running exactly when claimed and leased; ended exactly when terminal.
            assert (status == "running") == (token is not None) == (lease is not None)
            assert (ended is not None) == (status in ("succeeded", "failed", "cancelled"))
            if ended is not None:  # terminal runs never change again
                seen = self.terminal.setdefault(run_id, (status, ended))
                assert seen == (status, ended)
            else:
                live.setdefault(flow_id, []).append((status, trigger))
        assert set(self.terminal) <= {r[0] for r in runs}
        scheduled = {f.name for f in self.store.list_flows(limit=1000).items
                     if f.schedule is not None}
        for flow_id, name, status, cursor in flows:
            mine = live.get(flow_id, [])
            assert len(mine) <= 1  # one live run per flow
            if status == "paused":  # only a manual trigger runs a paused flow
                assert all(t != "schedule" for s, t in mine if s == "pending"), mine
            elif name in scheduled:
                assert len(mine) == 1, (name, mine)
            # Moved only by held claims, and forwards.
            assert (cursor or 0) == self.cursors.get(name, 0)


EXAMPLES = {"sqlite": 60, "postgresql": 15, "mariadb": 15}


@pytest.mark.slow
def test_the_run_life_cycle_keeps_its_invariants(db_url: str) -> None:
    FlowStore(db_url, auto_upgrade=True).close()  # migrate once; examples empty the tables
    kind = db_url.split(":", 1)[0].split("+", 1)[0].replace("mysql", "mariadb")
    machine = type("LifeCycle", (RunLifeCycle,), {"url": db_url})
    run = settings(max_examples=EXAMPLES[kind], stateful_step_count=40, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])(machine)
    run.TestCase().runTest()
