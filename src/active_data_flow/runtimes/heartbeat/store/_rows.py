"""Select statements and row-to-record conversion shared by the store's modules."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Row

from active_data_flow.runtimes.heartbeat.models import flows, runs
from active_data_flow.runtimes.heartbeat.records import (
    DeadLetter,
    FlowRecord,
    PartitionRecord,
    RunRecord,
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
    "truncate",
    "worker_record",
]

#: A result row of any shape.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

_live = runs.alias("live")

#: Limits that keep error texts inside every database's TEXT type.
MAX_ERROR = 8_000
MAX_TRACEBACK = 30_000


def truncate(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, marking the cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 20] + "\n... (truncated)"


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
    live_running = m["live_status"] == "running"
    return FlowRecord(
        id=m["id"], name=m["name"], origin=m["origin"], status=m["status"],
        source=m["source"], sinks=list(m["sinks"]), runtime=m["runtime"],
        dead_letter_sink=m["dead_letter_sink"], on_error=m["on_error"],
        batch_size=m["batch_size"], triggers=list(m["triggers"] or []),
        transform=m["transform"], cursor=m["cursor"], cursor_updated_at=m["cursor_updated_at"],
        next_run_at=m["live_due_at"] if m["live_status"] == "pending" else None,
        running_run_id=m["live_id"] if live_running else None,
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
    return RunRecord(
        id=m["id"], flow_id=m["flow_id"], flow=m["flow_name"], status=m["status"],
        trigger=m["trigger"], due_at=m["due_at"], worker_id=m["worker_id"],
        attempt=m["attempt"], started_at=m["started_at"], heartbeat_at=m["heartbeat_at"],
        lease_expires_at=m["lease_expires_at"], ended_at=m["ended_at"], read=m["read"],
        written=m["written"], skipped=m["skipped"], failed=m["failed"], batches=m["batches"],
        duration_s=m["duration_s"], cursor_start=m["cursor_start"],
        cursor_end=m["cursor_end"], error_type=m["error_type"], error=m["error"],
        traceback=m["traceback"], created_at=m["created_at"],
    )


def dead_letter_record(row: AnyRow) -> DeadLetter:
    """A DeadLetter from a row of ``adf_dead_letters``."""
    m = row._mapping
    return DeadLetter(
        id=m["id"], flow=m["flow"], run_id=m["run_id"], position=m["position"],
        error_type=m["error_type"], error=m["error"], message=m["message"],
        metadata=m["meta"] or {}, failed_at=m["failed_at"], replayed_at=m["replayed_at"],
        replay_error=m["replay_error"], replay_attempts=m["replay_attempts"],
    )


def worker_record(row: AnyRow) -> WorkerRecord:
    """A WorkerRecord from a row of ``adf_workers``."""
    m = row._mapping
    return WorkerRecord(
        id=m["id"], hostname=m["hostname"], pid=m["pid"], started_at=m["started_at"],
        last_beat_at=m["last_beat_at"], beats=m["beats"], last_claimed=m["last_claimed"],
    )


def partition_record(row: AnyRow) -> PartitionRecord:
    """A PartitionRecord from a row of ``adf_partitions``."""
    m = row._mapping
    return PartitionRecord(**{f.name: m[f.name] for f in fields(PartitionRecord)})
