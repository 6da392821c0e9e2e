"""Dead letters in the flow store: the ``dead_letters`` sink files a run's failed messages
under the run, and ``replay`` runs them through the flow again once its code is fixed."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from active_data_flow import DataFlow
from active_data_flow.catalog import FlowCatalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.message import Message
from active_data_flow.runtimes.heartbeat.engine.deadletters import replay
from active_data_flow.runtimes.heartbeat.engine.executor import Executor
from active_data_flow.runtimes.heartbeat.store import FlowNotFound, MemoryStore
from tests.unit.runtimes.heartbeat.engine.kit import claim, rows, spec, written


class Picky(DataFlow):
    """Refuses odd ids while ``strict``."""

    source = MemorySource(records=[])
    sinks = [MemorySink(name="deadletters-unused")]
    strict: ClassVar[bool] = True

    def transform(self, message: Message) -> Any:
        if type(self).strict and message["id"] % 2:
            raise ValueError(f"odd id {message['id']}")
        return {"id": message["id"], "ok": True}


@pytest.fixture
def picky(flows: FlowCatalog) -> type[Picky]:
    flows.register(Picky)
    Picky.strict = True
    return Picky


def letters_flow(sink: str) -> dict[str, Any]:
    return spec("letters", rows(4), sink, transform="picky", on_error="dead_letter",
                dead_letter_sink={"type": "dead_letters"})


def test_a_runs_dead_letters_are_filed_under_it_in_its_store(
    store: MemoryStore, executor: Executor, picky: type[Picky], sink: str
) -> None:
    store.create_flow(letters_flow(sink))
    store.trigger("letters")

    record = executor.execute(claim(store))

    assert record is not None
    assert (record.status, record.read, record.written, record.failed) == (
        "succeeded", 4, 2, 2)
    letters = store.list_dead_letters("letters").items
    assert [(d.position, d.run_id, d.error_type, d.error) for d in letters] == [
        (3, record.id, "builtins.ValueError", "odd id 3"),
        (1, record.id, "builtins.ValueError", "odd id 1")]
    assert letters[1].message == {"id": 1}
    assert written(sink) == [{"id": 0, "ok": True}, {"id": 2, "ok": True}]


def test_replay_writes_the_letters_the_fixed_code_handles(
    store: MemoryStore, executor: Executor, flows: FlowCatalog, picky: type[Picky], sink: str
) -> None:
    store.create_flow(letters_flow(sink))
    store.trigger("letters")
    executor.execute(claim(store))
    first, third = sorted(d.id for d in store.list_dead_letters("letters").items)

    failing = replay(store, "letters", flows=flows)  # the bug is not fixed yet
    assert (failing.replayed, failing.written) == ([], 0)
    assert failing.failed == {first: "ValueError: odd id 1", third: "ValueError: odd id 3"}
    Picky.strict = False
    fixed = replay(store, "letters", [third], flows=flows)

    assert (fixed.replayed, fixed.failed, fixed.written) == ([third], {}, 1)
    assert written(sink)[-1] == {"id": 3, "ok": True}
    left = store.list_dead_letters("letters").items
    assert [(d.id, d.replay_attempts, d.replay_error) for d in left] == [
        (first, 1, "ValueError: odd id 1")]
    assert replay(store, "letters", flows=flows).replayed == [first]
    assert store.list_dead_letters("letters").total == 0


def test_replaying_an_unknown_flow_raises(store: MemoryStore) -> None:
    with pytest.raises(FlowNotFound):
        replay(store, "nope", flows=FlowCatalog())
