"""Test helpers that ship with the package: in-memory connectors, a fault-injecting sink,
and the contract suites every source and sink should pass.

Use the fakes in your own flows' tests::

    from active_data_flow.testing import MemorySource, MemorySink, FaultySink

``FaultySink`` behaves like :class:`MemorySink` but raises on chosen flushes, transiently
(``ConnectorTimeout``, which runtimes retry) or permanently (``SinkError``), so tests can
check that a failed run loses nothing and that its cursor never passes unwritten data.

Run the contracts on your own connectors by subclassing them in a pytest module (see
:class:`SourceContract` and :class:`SinkContract`, and ``docs/plugins.md``)::

    from active_data_flow.testing import SinkContract, SourceContract

    class TestRangeSource(SourceContract):
        def make_source(self, records, tmp_path):
            ...
"""

from __future__ import annotations

from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.testing._contract import SPECIAL_VALUES
from active_data_flow.testing.fakes import FaultySink
from active_data_flow.testing.sinks import SinkContract
from active_data_flow.testing.sources import SourceContract
from active_data_flow.testing.tables import TableSinkContract, TableSourceContract

__all__ = [
    "SPECIAL_VALUES",
    "FaultySink",
    "MemorySink",
    "MemorySource",
    "SinkContract",
    "SourceContract",
    "TableSinkContract",
    "TableSourceContract",
]
