"""What the flow store hands out: plain, frozen, JSON-friendly records.

The store never returns ORM objects or live rows; these dataclasses are snapshots that the web
engine can serialise with ``to_dict()`` and the CLI can print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from active_data_flow.errors import ActiveDataFlowError, ConfigurationError, FlowError

__all__ = [
    "BeatSummary",
    "ClaimedPartition",
    "ClaimedRun",
    "DeadLetter",
    "FlowBusy",
    "FlowCodeError",
    "FlowExists",
    "FlowNotFound",
    "FlowRecord",
    "FlowStats",
    "Page",
    "PartitionBusy",
    "PartitionOutcome",
    "PartitionRecord",
    "ReplayReport",
    "RunCounts",
    "RunNotFound",
    "RunRecord",
    "StoreError",
    "StoreNotMigrated",
    "StoreUnavailable",
    "SyncReport",
    "WorkerRecord",
]

T = TypeVar("T")


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
def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-safe dict (datetimes as ISO 8601 strings)."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing.

    Attributes:
        items: the records on this page.
        total: how many records match the filters in all; for run listings counted up to a
            limit (see ``total_is_exact``), so that a page stays fast over a million runs.
        offset: index of the first item among all matches.
        limit: the page size asked for.
        total_is_exact: False when ``total`` is a lower bound ("10,000 or more").
    """

    items: Sequence[T]
    total: int
    offset: int
    limit: int
    total_is_exact: bool = True

    @property
    def has_more(self) -> bool:
        """Whether records follow this page."""
        return self.offset + len(self.items) < self.total

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with ``items`` as dicts."""
        return {
            "items": [i.to_dict() if hasattr(i, "to_dict") else i for i in self.items],
            "total": self.total, "offset": self.offset, "limit": self.limit,
            "total_is_exact": self.total_is_exact,
        }


@dataclass(frozen=True, slots=True)
class FlowRecord(_Record):
    """A flow as the store knows it.

    Attributes:
        name: unique name.
        origin: ``"code"`` (a DataFlow class of the application) or ``"spec"`` (JSON spec).
        status: ``"active"`` (scheduled) or ``"paused"``.
        source, sinks, runtime, dead_letter_sink: connector and runtime specs.
        on_error, batch_size, triggers: as on :class:`~active_data_flow.DataFlow`.
        transform: for a spec flow, the code flow whose transform it uses (``None``: identity).
        schedule: the runtime's interval (seconds) or cron expression; ``None``: on demand.
        cursor: where the next run resumes (``None``: from the beginning).
        next_run_at: when the pending run is due (``None``: nothing pending).
        running_run_id: the run in progress, if any.
        last_run_id, last_run_status, last_run_at, last_error: the latest finished run.
        code_error: why the flow's code cannot be loaded, when it cannot.
    """

    id: int
    name: str
    origin: str
    status: str
    source: dict[str, Any]
    sinks: list[dict[str, Any]]
    runtime: dict[str, Any]
    dead_letter_sink: dict[str, Any] | None
    on_error: str
    batch_size: int | None
    triggers: list[str]
    transform: str | None
    cursor: Any
    cursor_updated_at: datetime | None
    next_run_at: datetime | None
    running_run_id: int | None
    rerun_requested: bool
    last_run_id: int | None
    last_run_status: str | None
    last_run_at: datetime | None
    last_error: str | None
    code_error: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def schedule(self) -> float | str | None:
        """Seconds between runs, a cron expression, or ``None`` (on demand only)."""
        config = self.runtime.get("config") or {}
        if config.get("enabled", True) is False:
            return None
        value = config.get("interval")
        return value if isinstance(value, (int, float, str)) else None

    @property
    def spec(self) -> dict[str, Any]:
        """The flow as a JSON spec, as :meth:`FlowStore.create_flow` takes it."""
        spec: dict[str, Any] = {
            "name": self.name, "source": self.source, "sinks": self.sinks,
            "runtime": self.runtime, "on_error": self.on_error,
        }
        if self.dead_letter_sink is not None:
            spec["dead_letter_sink"] = self.dead_letter_sink
        if self.batch_size is not None:
            spec["batch_size"] = self.batch_size
        if self.triggers:
            spec["triggers"] = list(self.triggers)
        if self.transform is not None:
            spec["transform"] = self.transform
        return spec

    def to_dict(self) -> dict[str, Any]:
        data = _Record.to_dict(self)
        data["schedule"] = self.schedule
        return data


@dataclass(frozen=True, slots=True)
class RunRecord(_Record):
    """One run of a flow.

    Attributes:
        status: pending, running, succeeded, failed or cancelled.
        trigger: why it exists: ``schedule``, ``manual``, ``chain`` or ``recovery`` (it
            replaces a run whose worker stopped renewing its lease).
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
    status: str
    trigger: str
    due_at: datetime
    worker_id: str | None
    attempt: int
    started_at: datetime | None
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    ended_at: datetime | None
    read: int
    written: int
    skipped: int
    failed: int
    batches: int
    duration_s: float | None
    cursor_start: Any
    cursor_end: Any
    error_type: str | None
    error: str | None
    traceback: str | None
    created_at: datetime


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
        """The counts of a :class:`~active_data_flow.RunResult` (or a run record)."""
        return cls(result.read, result.written, result.skipped, result.failed, result.batches)

    def values(self) -> dict[str, int]:
        """As column values."""
        return {"read": self.read, "written": self.written, "skipped": self.skipped,
                "failed": self.failed, "batches": self.batches}


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run this worker holds: pass it to :func:`execute_claimed` or hand its id and token
    to another process (:func:`execute_run`).

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
class DeadLetter(_Record):
    """A message a flow could not handle."""

    id: int
    flow: str
    run_id: int | None
    position: Any
    error_type: str | None
    error: str | None
    message: dict[str, Any]
    metadata: dict[str, Any]
    failed_at: datetime
    replayed_at: datetime | None
    replay_error: str | None
    replay_attempts: int


@dataclass(frozen=True, slots=True)
class WorkerRecord(_Record):
    """A heartbeat caller and its last beat."""

    id: str
    hostname: str
    pid: int
    started_at: datetime
    last_beat_at: datetime
    beats: int
    last_claimed: int


@dataclass(frozen=True, slots=True)
class FlowStats(_Record):
    """Aggregates over a flow's most recent runs (``window`` of them at most)."""

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
    avg_duration_s: float | None
    max_duration_s: float | None
    last_success_at: datetime | None


@dataclass(frozen=True, slots=True)
class SyncReport(_Record):
    """What :meth:`FlowStore.sync` did, by flow name.

    Attributes:
        created, updated, unchanged: flows registered, changed, or already up to date.
        missing: code flows in the store that no loaded module defines (their record now
            carries a ``code_error``); removed when ``prune=True``.
        errors: flow or module -> why it could not be loaded or registered.
    """

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed to load or register."""
        return not self.errors


@dataclass(frozen=True, slots=True)
class ReplayReport(_Record):
    """What :meth:`FlowStore.replay_dead_letters` did: ids replayed and ids failing again."""

    replayed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    written: int = 0


@dataclass(frozen=True, slots=True)
class BeatSummary(_Record):
    """What one heartbeat did.

    Attributes:
        worker_id: the caller.
        started_at: when the beat began.
        duration_s: wall time (with ``background=True``, of the claim only).
        reclaimed: runs whose lease had expired, failed and replaced by a recovery run.
        claimed: runs claimed by this beat.
        succeeded, failed, interrupted, lost: how the runs executed inline ended
            (``lost``: the claim was taken over by another worker).
        dispatched: runs handed to another executor (background threads, a task queue).
        runs: the final records of the runs executed inline.
    """

    worker_id: str
    started_at: datetime
    duration_s: float = 0.0
    reclaimed: list[int] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when no run failed (what ``adf heartbeat`` exits with), else 1."""
        return 1 if self.failed else 0


@dataclass(frozen=True, slots=True)
class PartitionRecord(_Record):
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
    status: str
    source: dict[str, Any]
    cursor_start: Any
    cursor: Any
    worker_id: str | None
    attempt: int
    concurrency_limit: int | None
    concurrency_group: str | None
    group_limit: int | None
    hold_seconds: float
    started_at: datetime | None
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    ended_at: datetime | None
    read: int
    written: int
    skipped: int
    failed: int
    batches: int
    duration_s: float | None
    error_type: str | None
    error: str | None
    traceback: str | None
    created_at: datetime


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
