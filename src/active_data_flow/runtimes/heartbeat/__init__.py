"""The Heartbeat runtime: flows that run themselves, exactly once, and survive crashes
(DESIGN §5, §6; docs/heartbeat.md).

A flow runs on heartbeats when its runtime has an ``interval``::

    from active_data_flow.runtimes.heartbeat import Heartbeat

    class SyncUsers(DataFlow):
        source = ...
        sink = ...
        runtime = Heartbeat(interval=300)            # or interval="*/5 * * * *"

and a process registers and runs the flows::

    from active_data_flow.runtimes.heartbeat import FlowStore, Worker, beat, sync

    store = FlowStore()                 # ADF_DATABASE_URL, else ./active_data_flow.db
    sync(store, "app/data_flows")       # register the code-defined flows
    summary = beat(store)               # run whatever is due, once; or:
    Worker(store, interval=5).run()     # beat every 5 s until SIGTERM/SIGINT

Importing :class:`Heartbeat` costs only the core; the other names load the store and the
engine on first use. Records and errors live in :mod:`.store`
(``from active_data_flow.runtimes.heartbeat.store import FlowRecord, FlowNotFound``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from active_data_flow.runtimes.heartbeat.runtime import Heartbeat, HeartbeatConfig

if TYPE_CHECKING:
    from active_data_flow.catalog import load_flows, register_flow
    from active_data_flow.runtimes.heartbeat.engine.beat import beat
    from active_data_flow.runtimes.heartbeat.engine.deadletters import DeadLetterSink, replay
    from active_data_flow.runtimes.heartbeat.engine.executor import Executor, current_run
    from active_data_flow.runtimes.heartbeat.engine.sync import sync
    from active_data_flow.runtimes.heartbeat.engine.worker import Worker
    from active_data_flow.runtimes.heartbeat.store import FlowStore, MemoryStore

__all__ = [
    "DeadLetterSink",
    "Executor",
    "FlowStore",
    "Heartbeat",
    "HeartbeatConfig",
    "MemoryStore",
    "Worker",
    "beat",
    "current_run",
    "load_flows",
    "register_flow",
    "replay",
    "sync",
]

_ENGINE = "active_data_flow.runtimes.heartbeat.engine"
_LAZY = {
    "FlowStore": "active_data_flow.runtimes.heartbeat.store",
    "MemoryStore": "active_data_flow.runtimes.heartbeat.store",
    "Worker": f"{_ENGINE}.worker",
    "beat": f"{_ENGINE}.beat",
    "sync": f"{_ENGINE}.sync",
    "Executor": f"{_ENGINE}.executor",
    "current_run": f"{_ENGINE}.executor",
    "load_flows": "active_data_flow.catalog",
    "register_flow": "active_data_flow.catalog",
    "DeadLetterSink": f"{_ENGINE}.deadletters",
    "replay": f"{_ENGINE}.deadletters",
}


def __getattr__(name: str) -> Any:
    # The store and the engine (SQLAlchemy, Alembic, croniter) load on first use only.
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value
