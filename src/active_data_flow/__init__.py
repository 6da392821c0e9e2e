"""ActiveDataFlow: data flows for Python applications.

Declare a :class:`DataFlow` (a :class:`Source`, a ``transform``, one or more :class:`Sink`\\ s)
and run it inline, on a heartbeat, or on Celery::

    from active_data_flow import DataFlow
    from active_data_flow.connectors.jsonl import JsonLinesSource
    from active_data_flow.connectors.csv import CsvSink

    class ExportUsers(DataFlow):
        source = JsonLinesSource(path="users.jsonl")
        sink = CsvSink(path="users.csv")

        def transform(self, message):
            return {"id": message["id"], "email": message["email"].lower()}

    print(ExportUsers().run())

Every flow compiles to a :class:`FlowSpec` (``ExportUsers.flow_spec()``), the one
description of a flow that the flow store saves and the web API takes. Integrations live in
their own subpackages so that their extras stay optional:
``active_data_flow.connectors.sqlalchemy``, ``active_data_flow.runtimes.heartbeat``,
``active_data_flow.web`` and ``active_data_flow.runtimes.celery``.
"""

from __future__ import annotations

from active_data_flow.connector import Sink, Source
from active_data_flow.errors import (
    ActiveDataFlowError,
    ConfigurationError,
    ConnectorError,
    FlowRunError,
    SchemaError,
)
from active_data_flow.flow import ComponentSpec, DataFlow, FlowSpec
from active_data_flow.message import Message, Typed, Untyped
from active_data_flow.registry import register_connector, register_runtime
from active_data_flow.runner import Runner, RunResult
from active_data_flow.runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "ActiveDataFlowError",
    "ComponentSpec",
    "ConfigurationError",
    "ConnectorError",
    "DataFlow",
    "FlowRunError",
    "FlowSpec",
    "Message",
    "RunResult",
    "Runner",
    "Runtime",
    "SchemaError",
    "Sink",
    "Source",
    "Typed",
    "Untyped",
    "__version__",
    "register_connector",
    "register_runtime",
]
