"""What the flow store hands out: frozen, JSON-friendly records, and the store's errors.

The store never returns ORM objects or live rows. Records are pydantic models, so the web
API uses them as its response shapes as they are (``to_dict()`` gives their JSON form), and
this module imports no SQL: the in-memory store hands out the same records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from active_data_flow.errors import ActiveDataFlowError, ConfigurationError, FlowError
from active_data_flow.flow import FlowSpec

__all__ = [
    "LIVE_STATUSES",
    "TERMINAL_STATUSES",
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
    "InboxEntry",
    "InboxReceipt",
    "Page",
    "PartitionBusy",
    "PartitionOutcome",
    "PartitionRecord",
    "Record",
    "RunCounts",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "StoreError",
    "StoreNotMigrated",
    "StoreUnavailable",
    "WorkerRecord",
    "failed_note",
]

T = TypeVar("T")


# -- statuses --------------------------------------------------------------------------
class FlowStatus(enum.StrEnum):
    """Whether the heartbeat schedules a flow."""

    ACTIVE = "active"
    PAUSED = "paused"


class RunStatus(enum.StrEnum):
    """The life of a run: pending -> running -> succeeded / failed / cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_STATUSES: tuple[str, ...] = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
TERMINAL_STATUSES: tuple[str, ...] = tuple(
    s.value for s in RunStatus if s.value not in LIVE_STATUSES)


# -- errors ----------------------------------------------------------------------------
class StoreError(ActiveDataFlowError):
    """The flow store failed."""


class StoreUnavailable(StoreError):
    """The flow store's database could not be reached (after bounded retries)."""

    transient = True


class StoreNotMigrated(StoreError):
    """The flow store's database schema is missing or out of date: run ``adf db upgrade``."""


class FlowNotFound(ConfigurationError, LookupError):
    """No flow has that name in the store."""


class RunNotFound(ActiveDataFlowError, LookupError):
    """No run has that id in the store."""


class FlowExists(ConfigurationError):
    """A flow with that name already exists."""


class FlowBusy(FlowError):
    """The flow has a run in progress; the operation needs it idle."""


class FlowCodeError(ConfigurationError):
    """A flow's code cannot be loaded (its module fails to import, or defines it no more)."""


# -- records ---------------------------------------------------------------------------
class Record(BaseModel):
    """Base of the store's records: frozen; ``to_dict()`` is the JSON form."""

    model_config = ConfigDict(frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-safe dict (datetimes as ISO 8601 strings)."""
        return self.model_dump(mode="json")


class Page(BaseModel, Generic[T]):
    """One page of a listing.

    Attributes:
        items: the records on this page.
        total: how many records match the filters in all; for run listings counted up to a
            limit (see ``total_is_exact``), so that a page stays fast over a million runs.
        offset: index of the first item among all matches.
        limit: the page size asked for.
        total_is_exact: False when ``total`` is a lower bound ("10,000 or more").
    """

    model_config = ConfigDict(frozen=True)

    items: list[T]
    total: int = Field(description="How many records match, in all (see total_is_exact).")
    offset: int
    limit: int
    total_is_exact: bool = True

    @property
    def has_more(self) -> bool:
        """Whether records follow this page."""
        return self.offset + len(self.items) < self.total


class FlowState(Record):
    """What the store knows of a flow besides its spec.

    Attributes:
        id: the flow's row id.
        origin: ``"code"`` (a DataFlow class of the application) or ``"spec"`` (JSON spec).
        status: ``"active"`` (scheduled) or ``"paused"``.
        schedule: the runtime's interval (seconds) or cron expression; ``None``: on demand.
        cursor: where the next run resumes (``None``: from the beginning).
        next_run_at: when the pending run is due (``None``: nothing pending).
        running_run_id: the run in progress, if any.
        rerun_requested: a trigger arrived while the flow ran: it runs again right after.
        last_run_id, last_run_status, last_run_at, last_error: the latest finished run.
        code_error: why the flow's code cannot be loaded, when it cannot.
    """

    id: int
    origin: Literal["code", "spec"]
    status: FlowStatus
    schedule: float | str | None = Field(
        default=None, description="Seconds between runs, a cron expression, or null (on "
                                  "demand only).")
    cursor: Any = None
    cursor_updated_at: datetime | None = None
    next_run_at: datetime | None = None
    running_run_id: int | None = None
    rerun_requested: bool = False
    last_run_id: int | None = None
    last_run_status: RunStatus | None = None
    last_run_at: datetime | None = None
    last_error: str | None = None
    code_error: str | None = None
    created_at: datetime
    updated_at: datetime


class FlowRecord(FlowState):
    """A flow as the store knows it: its :class:`~active_data_flow.FlowSpec` and its state."""

    spec: FlowSpec

    @property
    def name(self) -> str:
        """The flow's name (``spec.name``)."""
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        """The spec's fields and the state's, side by side (the web API's flow shape)."""
        return {**self.spec.to_dict(), **self.model_dump(mode="json", exclude={"spec"})}


class RunRecord(Record):
    """One run of a flow.

    Attributes:
        status: pending, running, succeeded, failed or cancelled.
        trigger: why it exists: ``schedule``, ``manual``, ``chain``, ``cli`` or ``recovery``
            (it replaces a run whose worker stopped renewing its lease).
        due_at: when it became (or becomes) due.
        worker_id: who holds or held it.
        attempt: executions so far (transient errors are retried within one run).
        read, written, skipped, failed, batches: counts, as in a RunResult.
        cursor_start, cursor_end: the flow's cursor before and after the run.
        error, error_type, traceback: why it failed.
    """

    id: int
    flow_id: int
    flow: str
    status: RunStatus
    trigger: str
    due_at: datetime
    worker_id: str | None = None
    attempt: int = 0
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None
    ended_at: datetime | None = None
    read: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    batches: int = 0
    duration_s: float | None = None
    cursor_start: Any = None
    cursor_end: Any = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    created_at: datetime


class PartitionRecord(Record):
    """One part of a partitioned run: its own source range, checkpoint, worker and lease.

    Attributes:
        part: its position among the run's parts (0 reads first).
        source: the connector spec reading this part's range.
        cursor_start: where the part started; ``cursor``: its last checkpoint.
        worker_id: the worker executing (or that executed) it.
        attempt: executions so far (a retried or taken-over part counts each).
    """

    id: int
    run_id: int
    flow_id: int
    part: int
    status: RunStatus
    source: dict[str, Any]
    cursor_start: Any = None
    cursor: Any = None
    worker_id: str | None = None
    attempt: int = 0
    concurrency_limit: int | None = None
    concurrency_group: str | None = None
    group_limit: int | None = None
    hold_seconds: float
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None
    ended_at: datetime | None = None
    read: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    batches: int = 0
    duration_s: float | None = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    created_at: datetime


class DeadLetter(Record):
    """A message a flow could not handle."""

    id: int
    flow: str
    run_id: int | None = None
    position: Any = None
    error_type: str | None = None
    error: str | None = None
    message: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    failed_at: datetime
    replayed_at: datetime | None = None
    replay_error: str | None = None
    replay_attempts: int = 0


def failed_note(failed: int, on_error: str | None) -> str | None:
    """What became of a run's failed messages, in words (``"3 dead-lettered"``, ``"3
    skipped"``), or None when none failed: a run that succeeded with failed messages says so
    wherever it is shown (the web pages, ``adf runs``)."""
    if not failed:
        return None
    word = {"dead_letter": "dead-lettered", "skip": "skipped"}.get(on_error or "", "failed")
    return f"{failed:,} {word}"


class WorkerRecord(Record):
    """A heartbeat caller and its last beat."""

    id: str
    hostname: str
    pid: int
    started_at: datetime
    last_beat_at: datetime
    beats: int
    last_claimed: int


class FlowStats(Record):
    """Aggregates over a flow's most recent finished runs (``window`` of them at most)."""

    flow: str
    window: int
    runs: int
    succeeded: int
    failed: int
    cancelled: int
    read: int
    written: int
    skipped: int
    failed_records: int
    avg_duration_s: float | None = None
    max_duration_s: float | None = None
    last_success_at: datetime | None = None


# -- claims (in-process handles, not API shapes) -------------------------------------
@dataclass(frozen=True, slots=True)
class RunCounts:
    """What a run processed so far (summed over its attempts)."""

    read: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    batches: int = 0

    def __add__(self, other: RunCounts) -> RunCounts:
        return RunCounts(self.read + other.read, self.written + other.written,
                         self.skipped + other.skipped, self.failed + other.failed,
                         self.batches + other.batches)

    @classmethod
    def of(cls, result: Any) -> RunCounts:
        """The counts of a :class:`~active_data_flow.RunResult` (or a run record/row)."""
        return cls(result.read, result.written, result.skipped, result.failed, result.batches)

    def values(self) -> dict[str, int]:
        """As column values."""
        return {"read": self.read, "written": self.written, "skipped": self.skipped,
                "failed": self.failed, "batches": self.batches}


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run this worker holds: execute it, or hand its id and token to another process.

    Attributes:
        run_id: the run.
        token: the claim's fencing token; every write made for the run must present it.
        worker_id: the claim's holder.
        flow: the flow's record as of the claim.
        attempt: the attempt this claim starts.
        trigger: why the run exists.
        cursor: the flow's cursor as of the claim (where the run resumes; nobody else can
            move it while the claim holds).
        counts: the run's counts before this claim (non-zero for a run given back by a
            stopping worker and claimed again).
    """

    run_id: int
    token: str
    worker_id: str
    flow: FlowRecord
    attempt: int
    trigger: str
    cursor: Any = None
    counts: RunCounts = RunCounts()


@dataclass(frozen=True, slots=True)
class ClaimedPartition:
    """A part this worker holds; every write for it presents ``token``.

    Attributes:
        cursor: where to resume (the part's last checkpoint, or its start).
        hold_seconds: how far each renewal pushes the run's own lease.
    """

    partition_id: int
    run_id: int
    part: int
    token: str
    run_token: str
    worker_id: str
    attempt: int
    source: dict[str, Any]
    cursor: Any
    counts: RunCounts
    flow: FlowRecord
    hold_seconds: float


@dataclass(frozen=True, slots=True)
class PartitionBusy:
    """A part that cannot be claimed now: held by a live worker, or its flow (or group) is at
    its concurrency limit. Try again in ``retry_in`` seconds."""

    retry_in: float
    reason: str
    flow: FlowRecord


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    """What finishing a part did: its final record, and the run's when it was the last part."""

    partition: PartitionRecord
    run: RunRecord | None


class InboxEntry(Record):
    """A record pushed to a flow's inbox (see :class:`~.base.InboxRepository`)."""

    id: int
    flow: str
    key: str | None = None
    payload: dict[str, Any]
    received_at: datetime


class InboxReceipt(Record):
    """What one push stored: records new to the inbox, those whose idempotency key was
    already there (a retry), which were not stored again, and the id of the last record
    this push stored (``None``: none)."""

    accepted: int = 0
    duplicates: int = 0
    last_id: int | None = None
