"""Select statements and row-to-record conversion shared by the store's modules."""

from __future__ import annotations

from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Row

from active_data_flow.flow import FlowSpec
from active_data_flow.runtimes.heartbeat.schedule import interval_of
from active_data_flow.runtimes.heartbeat.store.codec import decode
from active_data_flow.runtimes.heartbeat.store.models import flows, runs
from active_data_flow.runtimes.heartbeat.store.records import (
    DeadLetter,
    FlowRecord,
    PartitionRecord,
    RunRecord,
    RunStatus,
    WorkerRecord,
)

__all__ = [
    "AnyRow",
    "dead_letter_record",
    "flow_record",
    "flow_select",
    "partition_record",
    "run_record",
    "run_select",
    "worker_record",
]

#: A result row of any shape.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

_live = runs.alias("live")

def flow_select() -> sa.Select[Any]:
    """Flows with their live run (the pending or running one), if any."""
    return sa.select(
        flows,
        _live.c.id.label("live_id"),
        _live.c.status.label("live_status"),
        _live.c.due_at.label("live_due_at"),
    ).select_from(flows.outerjoin(_live, _live.c.live_flow_id == flows.c.id))


def flow_record(row: AnyRow) -> FlowRecord:
    """A FlowRecord from a :func:`flow_select` row."""
    m = row._mapping
    spec = FlowSpec.model_validate(m["spec"])
    return FlowRecord(
        id=m["id"], spec=spec, origin=m["origin"], status=m["status"],
        schedule=interval_of(m["spec"].get("runtime") or {}),
        cursor=m["cursor"], cursor_updated_at=m["cursor_updated_at"],
        next_run_at=m["live_due_at"] if m["live_status"] == "pending" else None,
        running_run_id=m["live_id"] if m["live_status"] == "running" else None,
        rerun_requested=bool(m["rerun_requested"]), last_run_id=m["last_run_id"],
        last_run_status=m["last_run_status"], last_run_at=m["last_run_at"],
        last_error=m["last_error"], code_error=m["code_error"],
        created_at=m["created_at"], updated_at=m["updated_at"],
    )


def run_select() -> sa.Select[Any]:
    """Runs with their flow's name."""
    return sa.select(runs, flows.c.name.label("flow_name")).select_from(
        runs.join(flows, flows.c.id == runs.c.flow_id)
    )


def run_record(row: AnyRow) -> RunRecord:
    """A RunRecord from a :func:`run_select` row."""
    m = row._mapping
    return RunRecord.model_construct(
        **{name: m[name] for name in _RUN_COLUMNS}, flow=m["flow_name"],
        status=RunStatus(m["status"]))


def dead_letter_record(row: AnyRow) -> DeadLetter:
    """A DeadLetter from a row of ``adf_dead_letters`` (message, metadata and position
    decoded from their tagged JSON)."""
    m = row._mapping
    values = {name: m[name] for name in _LETTER_COLUMNS}
    values.update(position=decode(m["position"]), message=decode(m["message"]))
    return DeadLetter.model_construct(**values, metadata=decode(m["meta"]) or {})


def worker_record(row: AnyRow) -> WorkerRecord:
    """A WorkerRecord from a row of ``adf_workers``."""
    return WorkerRecord.model_construct(**dict(row._mapping))


def partition_record(row: AnyRow) -> PartitionRecord:
    """A PartitionRecord from a row of ``adf_partitions``."""
    m = row._mapping
    return PartitionRecord.model_construct(
        **{name: m[name] for name in _PART_COLUMNS}, status=RunStatus(m["status"]))


# Rows are the store's own, already valid: records are constructed without validation.
_RUN_COLUMNS = [n for n in RunRecord.model_fields if n not in ("flow", "status")]
_LETTER_COLUMNS = [n for n in DeadLetter.model_fields if n != "metadata"]
_PART_COLUMNS = [n for n in PartitionRecord.model_fields if n != "status"]
