"""What is particular to the in-memory store (its contract is tests/contract/test_stores.py):
values come back as a JSON column gives them, stores share nothing, records are snapshots,
and concurrent callers claim each run once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Untyped
from active_data_flow.runner import dead_letter
from active_data_flow.runtimes.heartbeat.store import MemoryStore, RunCounts, RunStatus

WAIT = 5.0


def flow(name: str, interval: float | None = 60) -> dict[str, Any]:
    config = {} if interval is None else {"interval": interval}
    return {"name": name, "source": {"type": "memory", "config": {"records": []}},
            "sink": {"type": "memory", "config": {"name": "memory-store-test"}},
            "runtime": {"type": "heartbeat", "config": config}}


def test_values_come_back_as_a_json_column_gives_them() -> None:
    store = MemoryStore()
    store.create_flow(flow("a"))
    moment = datetime(2030, 1, 1, tzinfo=UTC)

    assert store.reset_cursor("a", ("page", 2)).cursor == ["page", 2]
    [claim] = store.runs.claim_due("w1")
    assert claim.cursor == ["page", 2]
    store.runs.checkpoint(claim, {"at": moment, "keys": (1, 2)})
    assert store.get_flow("a").cursor == {"at": str(moment), "keys": [1, 2]}
    assert store.get_run(claim.run_id).cursor_end == {"at": str(moment), "keys": [1, 2]}
    store.dead_letters.add([dead_letter("a", Untyped({"id": (1, 2)}, position=(3, 4)),
                                        ValueError("x"))], claim.run_id)
    [letter] = store.list_dead_letters("a").items
    assert (letter.message, letter.position) == ({"id": [1, 2]}, [3, 4])


def test_a_cursor_changed_after_saving_does_not_change_the_store() -> None:
    store = MemoryStore()
    store.create_flow(flow("a"))
    cursor = {"ids": [1]}

    store.reset_cursor("a", cursor)
    cursor["ids"].append(2)

    assert store.get_flow("a").cursor == {"ids": [1]}


def test_records_are_snapshots() -> None:
    store = MemoryStore()
    before = store.create_flow(flow("a"))

    store.pause("a")

    assert (before.status, store.get_flow("a").status) == ("active", "paused")
    with pytest.raises(ValueError, match="frozen"):
        before.status = "paused"  # type: ignore[misc]


def test_stores_share_nothing() -> None:
    one, two = MemoryStore(), MemoryStore()

    one.create_flow(flow("a"))

    assert two.list_flows().total == 0
    assert two.create_flow(flow("a")).id == 1


def test_concurrent_callers_claim_each_run_once() -> None:
    store = MemoryStore()
    for index in range(60):
        store.create_flow(flow(f"f{index}"))
    callers = 6
    start = threading.Barrier(callers, timeout=WAIT)
    claimed: list[int] = []
    lock = threading.Lock()

    def caller(index: int) -> None:
        start.wait()
        while got := store.runs.claim_due(f"w{index}", limit=3):
            with lock:
                claimed.extend(c.run_id for c in got)
            for claim in got:
                store.runs.finish(claim, RunStatus.SUCCEEDED, RunCounts())

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert not any(t.is_alive() for t in threads)
    assert len(claimed) == 60
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert store.list_runs(status="succeeded").total == 60


@pytest.mark.parametrize(("options", "option"), [
    ({"lease_seconds": 0}, "lease_seconds"),
    ({"lease_seconds": 10, "renew_seconds": 10}, "renew_seconds"),
    ({"lease_seconds": 10, "renew_seconds": 0}, "renew_seconds"),
])
def test_lease_settings_are_checked(options: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        MemoryStore(**options)
    assert caught.value.option == option


def test_a_memory_store_has_nothing_to_close() -> None:
    with MemoryStore(lease_seconds=8) as store:
        assert (store.lease_seconds, store.renew_seconds) == (8, 1.6)  # a fifth
        assert repr(store) == "MemoryStore()"
    assert store.list_flows().total == 0  # still usable: closing released nothing
