"""The lease renewer: keeps every claim of the process alive, and marks the ones another
worker took over as lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from active_data_flow.runtimes.heartbeat.engine.leases import LeaseRenewer
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedPartition,
    ClaimedRun,
    MemoryStore,
    StoreUnavailable,
)
from tests.unit.runtimes.heartbeat.engine.kit import LEASE, Clock, rows, spec

WAIT = 5.0


@pytest.fixture
def renewer(store: MemoryStore) -> Iterator[LeaseRenewer]:
    leases = LeaseRenewer(store)
    yield leases
    leases.close()


@pytest.fixture
def claims(store: MemoryStore, sink: str) -> list[ClaimedRun]:
    """Two claimed runs (flows ``a`` and ``b``)."""
    for name in ("a", "b"):
        store.create_flow(spec(name, rows(1), sink, interval=60))
    return store.runs.claim_due("w1")


def lease_of(store: MemoryStore, claim: ClaimedRun) -> Any:
    return store.get_run(claim.run_id).lease_expires_at


def test_renew_now_extends_every_held_lease(
    store: MemoryStore, renewer: LeaseRenewer, claims: list[ClaimedRun], clock: Clock
) -> None:
    for claim in claims:
        renewer.hold(claim)
    clock.advance(20)

    assert renewer.renew_now() == set()

    expected = clock.now + timedelta(seconds=LEASE)
    assert [lease_of(store, c) for c in claims] == [expected, expected]


def test_a_claim_taken_over_is_marked_lost(
    store: MemoryStore, renewer: LeaseRenewer, claims: list[ClaimedRun], clock: Clock
) -> None:
    lost, kept = (renewer.hold(c) for c in claims)
    renewer.renew_now()
    clock.advance(LEASE + 1)
    store.runs.renew([kept.claim])  # only a's worker stalled
    store.runs.reclaim_expired()

    assert renewer.renew_now() == {claims[0].run_id}

    assert lost.lost.is_set()
    assert not kept.lost.is_set()


def test_released_claims_are_no_longer_renewed(
    store: MemoryStore, renewer: LeaseRenewer, claims: list[ClaimedRun], clock: Clock
) -> None:
    for claim in claims:
        renewer.hold(claim)
    before = lease_of(store, claims[0])

    renewer.release(claims[0])
    clock.advance(10)
    renewer.renew_now()

    assert [h.claim for h in renewer.held()] == [claims[1]]
    assert lease_of(store, claims[0]) == before


def test_holding_is_once_per_claim(
    store: MemoryStore, renewer: LeaseRenewer, claims: list[ClaimedRun]
) -> None:
    first = renewer.hold(claims[0])

    assert renewer.hold(claims[0]) is first
    store.runs.release(claims[0], reason="back")
    again = store.runs.claim(claims[0].run_id, "w1")
    assert again is not None
    renewed = renewer.hold(again)  # the same run under a new claim replaces the old one
    assert renewed is not first
    assert [h.claim.token for h in renewer.held()] == [again.token]
    renewer.release(claims[0])  # the old claim's release leaves the new one held
    assert [h.claim for h in renewer.held()] == [again]


def test_parts_are_renewed_with_their_runs(
    store: MemoryStore, renewer: LeaseRenewer, claims: list[ClaimedRun], clock: Clock
) -> None:
    run = claims[0]
    ids = store.partitions.open(run, [({"type": "memory", "config": {"records": []}}, None)],
                                cursor_start=None, hold_seconds=300)
    assert ids is not None
    part = store.partitions.claim(ids[0], "w2")
    assert isinstance(part, ClaimedPartition)
    renewer.hold(part)
    clock.advance(20)

    assert renewer.renew_now() == set()

    assert store.get_partition(ids[0]).lease_expires_at == clock.now + timedelta(seconds=LEASE)
    assert lease_of(store, run) == clock.now + timedelta(seconds=300)
    store.runs.release(run, reason="gone")  # the run ended: its parts are void
    assert renewer.renew_now() == {ids[0]}
    assert renewer.held()[0].lost.is_set()


def test_the_renewal_thread_renews_on_its_own_until_closed(
    clock: Clock, sink: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore(clock=clock, lease_seconds=LEASE, renew_seconds=0.01)
    store.create_flow(spec("a", rows(1), sink, interval=60))
    [claim] = store.runs.claim_due("w1")
    renewed = threading.Event()
    original = store.runs.renew

    def renew(held: Any) -> set[int]:
        gone = original(held)
        renewed.set()
        return gone

    monkeypatch.setattr(store.runs, "renew", renew)
    leases = LeaseRenewer(store)
    leases.hold(claim)
    thread = leases._thread
    assert thread is not None

    assert renewed.wait(WAIT)
    leases.close()

    assert not thread.is_alive()


def test_the_renewal_thread_survives_a_store_outage_and_ends_when_idle(
    clock: Clock, sink: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore(clock=clock, lease_seconds=LEASE, renew_seconds=0.01)
    store.create_flow(spec("a", rows(1), sink, interval=60))
    [claim] = store.runs.claim_due("w1")
    calls: list[int] = []
    recovered = threading.Event()

    def renew(held: Any) -> set[int]:
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailable("database restarting")
        recovered.set()
        return set()

    monkeypatch.setattr(store.runs, "renew", renew)
    leases = LeaseRenewer(store)
    leases.hold(claim)
    thread = leases._thread
    assert thread is not None

    assert recovered.wait(WAIT)
    leases.release(claim)
    thread.join(WAIT)  # nothing held: the thread ends by itself
    assert not thread.is_alive()
    leases.close()
