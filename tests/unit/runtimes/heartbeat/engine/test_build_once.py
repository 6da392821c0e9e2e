"""A heartbeat builds the runtime and each connector of a run once: nothing is constructed
only to be thrown away (on the in-memory store, so every construction is the engine's)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from active_data_flow import DataFlow
from active_data_flow.catalog import FlowCatalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.registry import register_connector, register_runtime
from active_data_flow.runtimes.heartbeat import Heartbeat, MemoryStore, beat, sync
from active_data_flow.runtimes.heartbeat.engine.executor import Executor

built: Counter[str] = Counter()


@register_connector("counting_source")
class CountingSource(MemorySource):
    untrusted_ok = True  # the test stores specs that name it

    def _setup(self) -> None:
        built["source"] += 1


@register_connector("counting_sink")
class CountingSink(MemorySink):
    untrusted_ok = True

    def _setup(self) -> None:
        super()._setup()
        built["sink"] += 1


@register_runtime("counting_runtime")
class CountingRuntime(Heartbeat):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        built["runtime"] += 1


class CodeFlow(DataFlow):
    source = CountingSource(records=[{"id": 1}, {"id": 2}])
    sink = CountingSink(name="build-once-code")
    runtime = CountingRuntime(interval=60)


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    built.clear()


def test_a_stored_spec_flow_builds_its_runtime_and_connectors_once_per_run() -> None:
    store = MemoryStore()
    store.create_flow({"name": "spec_flow",
                       "source": {"type": "counting_source", "config": {"records": [{"id": 1}]}},
                       "sink": {"type": "counting_sink", "config": {"name": "build-once"}},
                       "runtime": {"type": "counting_runtime", "config": {"interval": 60}}})
    built.clear()  # creating a flow checks its spec by building each part once
    for _ in range(3):
        store.trigger("spec_flow")
        summary = beat(store)
        assert [r.status for r in summary.runs] == ["succeeded"]
    assert built == {"source": 3, "sink": 3, "runtime": 3}


def test_a_code_flow_builds_its_connectors_once_per_run() -> None:
    store = MemoryStore()
    flows = FlowCatalog()
    flows.register(CodeFlow)
    sync(store, flows=flows)
    CodeFlow.flow_spec()  # compiled once per class, not per run
    built.clear()
    executor = Executor(store, flows=flows)
    for _ in range(3):
        store.reset_cursor("code_flow")
        store.trigger("code_flow")
        summary = beat(store, executor=executor)
        assert [r.status for r in summary.runs] == ["succeeded"]
    executor.close()
    # Templates are cloned (``_setup`` runs per clone): one source and one sink per run;
    # the runtime is built once per run from the stored spec, for dispatch and execution.
    assert built == {"source": 3, "sink": 3, "runtime": 3}
