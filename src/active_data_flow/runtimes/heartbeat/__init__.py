"""The Heartbeat runtime and the flow store: flows that run themselves, exactly once, and
survive crashes (DESIGN §5, §6; docs/heartbeat.md).

Typical use::

    from active_data_flow.runtimes.heartbeat import FlowStore, Worker, beat

    store = FlowStore()                 # ADF_DATABASE_URL, else ./active_data_flow.db
    store.sync("app/data_flows")        # register the code-defined flows
    summary = beat(store)               # run whatever is due, once; or:
    Worker(store, interval=5).run()     # beat every 5 s until SIGTERM/SIGINT

A flow runs on a heartbeat when its runtime has an ``interval``::

    class SyncUsers(DataFlow):
        source = ...
        sink = ...
        runtime = Heartbeat(interval=300)            # or interval="*/5 * * * *"

Public names:

* :class:`Heartbeat` (runtime type ``heartbeat``), :class:`HeartbeatRunner`,
  :class:`StoreCheckpoint`, :func:`current_run`;
* :class:`FlowStore` and the records it returns (:class:`FlowRecord`, :class:`RunRecord`,
  :class:`Page`, :class:`SyncReport`, :class:`DeadLetter`, :class:`FlowStats`, ...);
* :func:`beat`, :class:`BeatSummary`, :class:`Worker`, :func:`execute_run`,
  :func:`execute_claimed`, :class:`ClaimedRun`;
* :func:`load_flows`, :func:`register_flow`, :data:`catalog`;
* :class:`DeadLetterSink` (connector type ``dead_letters``);
* errors: :class:`FlowNotFound`, :class:`FlowExists`, :class:`FlowBusy`,
  :class:`FlowCodeError`, :class:`RunNotFound`, :class:`StoreError`,
  :class:`StoreUnavailable`, :class:`StoreNotMigrated`.
"""

from __future__ import annotations

from active_data_flow.runtimes.heartbeat.beat import BackgroundRuns, beat
from active_data_flow.runtimes.heartbeat.deadletters import DeadLetterSink
from active_data_flow.runtimes.heartbeat.execution import (
    default_worker_id,
    execute_claimed,
    execute_run,
)
from active_data_flow.runtimes.heartbeat.models import FlowStatus, RunStatus
from active_data_flow.runtimes.heartbeat.records import (
    BeatSummary,
    ClaimedPartition,
    ClaimedRun,
    DeadLetter,
    FlowBusy,
    FlowCodeError,
    FlowExists,
    FlowNotFound,
    FlowRecord,
    FlowStats,
    Page,
    PartitionBusy,
    PartitionOutcome,
    PartitionRecord,
    ReplayReport,
    RunCounts,
    RunNotFound,
    RunRecord,
    StoreError,
    StoreNotMigrated,
    StoreUnavailable,
    SyncReport,
    WorkerRecord,
)
from active_data_flow.runtimes.heartbeat.registration import (
    FlowSpec,
    catalog,
    load_flows,
    register_flow,
)
from active_data_flow.runtimes.heartbeat.runtime import (
    Dispatch,
    Heartbeat,
    HeartbeatConfig,
    HeartbeatRunner,
    RunContext,
    StoreCheckpoint,
    current_run,
)
from active_data_flow.runtimes.heartbeat.schedule import Schedule
from active_data_flow.runtimes.heartbeat.store import FlowStore
from active_data_flow.runtimes.heartbeat.store._schema import (
    BRANCH,
    VERSION_TABLE,
    head_revision,
    migrations_path,
)
from active_data_flow.runtimes.heartbeat.worker import Worker

__all__ = [
    "BRANCH",
    "VERSION_TABLE",
    "BackgroundRuns",
    "BeatSummary",
    "ClaimedPartition",
    "ClaimedRun",
    "DeadLetter",
    "DeadLetterSink",
    "Dispatch",
    "FlowBusy",
    "FlowCodeError",
    "FlowExists",
    "FlowNotFound",
    "FlowRecord",
    "FlowSpec",
    "FlowStats",
    "FlowStatus",
    "FlowStore",
    "Heartbeat",
    "HeartbeatConfig",
    "HeartbeatRunner",
    "Page",
    "PartitionBusy",
    "PartitionOutcome",
    "PartitionRecord",
    "ReplayReport",
    "RunContext",
    "RunCounts",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "Schedule",
    "StoreCheckpoint",
    "StoreError",
    "StoreNotMigrated",
    "StoreUnavailable",
    "SyncReport",
    "Worker",
    "WorkerRecord",
    "beat",
    "catalog",
    "current_run",
    "default_worker_id",
    "execute_claimed",
    "execute_run",
    "head_revision",
    "load_flows",
    "migrations_path",
    "register_flow",
]
