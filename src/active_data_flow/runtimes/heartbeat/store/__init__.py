"""The flow store: flows, runs, partitions, dead letters and heartbeats.

:class:`FlowStore` keeps them in a SQL database; :class:`MemoryStore` in memory, with the
same contract (for tests of code that drives the engine). Both are a :class:`Store`: five
repositories (``store.flows``, ``.runs``, ``.partitions``, ``.dead_letters``,
``.workers``; see :mod:`.base`) and the operations applications call
(``store.create_flow(...)``, ``store.trigger(...)``, ``store.list_runs(...)``...).
"""

from __future__ import annotations

from active_data_flow.runtimes.heartbeat.store.base import Store, StoreSettings
from active_data_flow.runtimes.heartbeat.store.memory import MemoryStore
from active_data_flow.runtimes.heartbeat.store.records import (
    ClaimedPartition,
    ClaimedRun,
    DeadLetter,
    FlowBusy,
    FlowCodeError,
    FlowExists,
    FlowNotFound,
    FlowRecord,
    FlowState,
    FlowStats,
    FlowStatus,
    InboxEntry,
    InboxReceipt,
    Page,
    PartitionBusy,
    PartitionOutcome,
    PartitionRecord,
    RunCounts,
    RunNotFound,
    RunRecord,
    RunStatus,
    StoreError,
    StoreNotMigrated,
    StoreUnavailable,
    WorkerRecord,
    failed_note,
)
from active_data_flow.runtimes.heartbeat.store.sql import FlowStore

__all__ = [
    "ClaimedPartition",
    "ClaimedRun",
    "DeadLetter",
    "FlowBusy",
    "FlowCodeError",
    "FlowExists",
    "FlowNotFound",
    "FlowRecord",
    "FlowState",
    "FlowStats",
    "FlowStatus",
    "FlowStore",
    "InboxEntry",
    "InboxReceipt",
    "MemoryStore",
    "Page",
    "PartitionBusy",
    "PartitionOutcome",
    "PartitionRecord",
    "RunCounts",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "Store",
    "StoreError",
    "StoreNotMigrated",
    "StoreSettings",
    "StoreUnavailable",
    "WorkerRecord",
    "failed_note",
]
