"""Many heartbeats at once never run a due flow twice, and never miss one.

8 separate processes (own connections, real parallelism) are released together by a barrier
and each runs one heartbeat over 200 due flows. Every execution records its run id in a tally
table on its own autocommit connection. Per trial: no run id twice, every due run once, and
afterwards each flow has exactly one pending run (its next slot) and none running.

The harness proves it can fail: with the claim guard switched off it counts double runs.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import sqlalchemy as sa

from active_data_flow.runtimes.heartbeat import FlowStore
from tests.integration.runtimes.heartbeat import harness, sqlkit

PROCESSES = 8
FLOWS = 200


@dataclass
class Tally:
    trials: int = 0
    runs: int = 0
    doubles: int = 0
    missed: int = 0
    problems: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)


def prepare(url: str) -> FlowStore:
    store = FlowStore(url, auto_upgrade=True)
    sqlkit.create(url, sqlkit.tally_table())
    for i in range(FLOWS):
        store.create_flow({
            "name": f"flow_{i:03d}",
            "source": {"type": "test_tally", "config": {"url": url}},
            "sink": {"type": "memory", "config": {"name": "concurrency"}},
            "runtime": {"type": "heartbeat", "config": {"interval": 3600}},
        })
    return store


def make_all_due(store: FlowStore) -> list[int]:
    """Time travel: every pending run becomes due; return their ids."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM tally"))
        conn.execute(sa.text("UPDATE adf_runs SET due_at = :t WHERE status = 'pending'"),
                     {"t": (store.now() - timedelta(seconds=1)).replace(tzinfo=None)})
        return list(conn.execute(sa.text(
            "SELECT id FROM adf_runs WHERE status = 'pending'")).scalars())


def check_trial(store: FlowStore, due: list[int], tally: Tally) -> None:
    with store.engine.connect() as conn:
        executed = collections.Counter(conn.execute(sa.text("SELECT run_id FROM tally")).scalars())
        pending = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT flow_id) FROM adf_runs WHERE status = 'pending'"
        )).one()
        running = conn.execute(sa.text(
            "SELECT count(*) FROM adf_runs WHERE status = 'running'")).scalar_one()
    tally.trials += 1
    tally.runs += sum(executed.values())
    tally.doubles += sum(n - 1 for n in executed.values() if n > 1)
    tally.missed += len(set(due) - set(executed))
    if set(executed) - set(due):
        tally.problems.append(f"executed runs that were not due: {set(executed) - set(due)}")
    if tuple(pending) != (FLOWS, FLOWS) or running:
        tally.problems.append(f"after trial {tally.trials}: {pending[0]} pending runs over "
                              f"{pending[1]} flows, {running} running")


def race(url: str, trials: int, *, guard: bool = True) -> Tally:
    store = prepare(url)
    ctx = harness.context()
    barrier = ctx.Barrier(PROCESSES + 1)
    results = ctx.Queue()
    children = [ctx.Process(target=harness.beat_trials,
                            args=(url, i, trials, barrier, results, guard))
                for i in range(PROCESSES)]
    for child in children:
        child.start()
    tally = Tally()
    try:
        for _ in range(trials):
            due = make_all_due(store)
            barrier.wait(timeout=120)
            reports = harness.drain(results, PROCESSES, timeout=120)
            tally.problems += [r[3] for r in reports if r[3]]
            tally.alarms += [alarm for r in reports for alarm in r[4]]
            check_trial(store, due, tally)
            if not guard:  # double claims leave runs behind; make the next trial clean
                reset(store)
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
        store.close()
    return tally


def reset(store: FlowStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE adf_runs SET status = 'succeeded', live_flow_id = NULL, "
                             "claim_token = NULL WHERE status IN ('running', 'pending')"))
        flows = conn.execute(sa.text("SELECT id FROM adf_flows")).scalars().all()
    for flow_id in flows:
        with store.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO adf_runs (flow_id, status, live_flow_id, {q}trigger{q}, due_at, "
                "attempt, {q}read{q}, written, skipped, failed, batches, created_at) "
                "VALUES (:f, 'pending', :f, 'schedule', :t, 0, 0, 0, 0, 0, 0, :t)".format(
                    q="`" if store.database.backend == "mysql" else '"')),
                {"f": flow_id, "t": store.now().replace(tzinfo=None)})


TRIALS = {"postgresql": 50, "mariadb": 50, "sqlite": 5}  # the counts


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "mariadb", "sqlite"])
def test_concurrent_heartbeats_run_every_due_flow_exactly_once(
    kind: str, make_database: object
) -> None:
    url = make_database(kind)  # type: ignore[operator]
    trials = TRIALS[kind]
    tally = race(url, trials)
    assert tally.problems == []
    assert (tally.trials, tally.doubles, tally.missed) == (trials, 0, 0)
    assert tally.runs == trials * FLOWS
    assert tally.alarms == []  # no claim reported lost, no run reclaimed: nobody died


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_the_harness_detects_double_runs_when_the_claim_guard_is_off(
    kind: str, make_database: object
) -> None:
    url = make_database(kind)  # type: ignore[operator]
    tally = race(url, trials=2, guard=False)
    assert tally.doubles > 0, "with no claim guard the race must show double runs"


@pytest.mark.stress
@pytest.mark.parametrize("kind", ["postgresql", "mariadb", "sqlite"])
def test_stress_many_more_trials(kind: str, make_database: object) -> None:
    """Opt-in: 300 trials (about 4 minutes per server database)."""
    url = make_database(kind)  # type: ignore[operator]
    tally = race(url, 300 if kind != "sqlite" else 50)
    assert (tally.problems, tally.doubles, tally.missed, tally.alarms) == ([], 0, 0, [])
