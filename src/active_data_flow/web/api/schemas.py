"""The JSON shapes of the API (its OpenAPI document is generated from these).

Requests are strict (unknown fields are errors); responses are snapshots of the store's
records with every secret masked (:mod:`active_data_flow.masking`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from active_data_flow.flow import FLOW_NAME_PATTERN

__all__ = [
    "MAX_ID",
    "NAME_PATTERN",
    "BeatSummaryOut",
    "ConnectorSpec",
    "ConnectorTypes",
    "CursorReset",
    "DeadLetterOut",
    "DeadLetterPage",
    "ErrorOut",
    "FlowOut",
    "FlowPage",
    "FlowPatch",
    "FlowSpecIn",
    "FlowStatsOut",
    "HealthOut",
    "ReplayOut",
    "ReplayRequest",
    "RunOut",
    "RunPage",
    "RuntimeSpec",
    "SinkSpec",
    "SourceSpec",
]

#: Flow names: what the store accepts (never "." or "..", which no URL path can carry).
NAME_PATTERN = FLOW_NAME_PATTERN

#: Largest id the API takes: exact in JSON numbers everywhere (JavaScript's safe integers).
MAX_ID = 2**53 - 1

FlowName = Annotated[str, Field(pattern=NAME_PATTERN, description="Unique flow name.")]
OnError = Literal["fail", "skip", "dead_letter"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectorSpec(_Strict):
    """A connector or runtime by registered type name, with its options."""

    type: str = Field(min_length=1, max_length=100, examples=["jsonl"],
                      description="Registered type name (see GET /api/connectors).")
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"path": "in.jsonl"}],
                                   description="The type's options.")


class SourceSpec(ConnectorSpec):
    """A source: ``type`` is one of the registered source types."""


class SinkSpec(ConnectorSpec):
    """A sink: ``type`` is one of the registered sink types."""


class RuntimeSpec(ConnectorSpec):
    """A runtime: ``type`` is one of the registered runtimes; ``config.interval`` (seconds
    or a cron expression) schedules the flow, ``config.batch_size`` sets its batches."""


class FlowSpecIn(_Strict):
    """A new flow. Give ``sink`` or ``sinks``; ``runtime`` defaults to an on-demand
    heartbeat runtime (set ``runtime.config.interval`` to schedule it)."""

    name: FlowName
    source: SourceSpec
    sink: SinkSpec | None = None
    sinks: list[SinkSpec] | None = Field(default=None, min_length=1, max_length=20)
    runtime: RuntimeSpec | None = None
    on_error: OnError = "fail"
    dead_letter_sink: SinkSpec | None = None
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)
    triggers: list[FlowName] = Field(default_factory=list, max_length=50,
                                     description="Flows to trigger when a run succeeds.")
    transform: FlowName | None = Field(
        default=None, description="A code-defined flow whose transform this flow uses.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "copy_users",
        "source": {"type": "jsonl", "config": {"path": "users.jsonl"}},
        "sink": {"type": "csv", "config": {"path": "users.csv"}},
        "runtime": {"type": "heartbeat", "config": {"interval": 300}},
    }]})


class FlowPatch(_Strict):
    """Changes to a spec flow: the fields given replace the stored ones."""

    source: SourceSpec | None = None
    sink: SinkSpec | None = None
    sinks: list[SinkSpec] | None = Field(default=None, min_length=1, max_length=20)
    runtime: RuntimeSpec | None = None
    on_error: OnError | None = None
    dead_letter_sink: SinkSpec | None = None
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)
    triggers: list[FlowName] | None = Field(default=None, max_length=50)
    transform: FlowName | None = None


class CursorReset(_Strict):
    """Where the next run resumes: a position the source understands, or null (start)."""

    cursor: Any = None


class ReplayRequest(_Strict):
    """Which dead letters to replay (all unreplayed ones when ``ids`` is null)."""

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(default=None,
                                                                   max_length=10_000)


class FlowOut(BaseModel):
    """A stored flow (secrets in its specs masked)."""

    id: int
    name: str
    origin: Literal["code", "spec"]
    status: Literal["active", "paused"]
    source: dict[str, Any]
    sinks: list[dict[str, Any]]
    runtime: dict[str, Any]
    dead_letter_sink: dict[str, Any] | None
    on_error: str
    batch_size: int | None
    triggers: list[str]
    transform: str | None
    schedule: float | str | None = Field(description="Seconds between runs, a cron "
                                         "expression, or null (on demand only).")
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


class RunOut(BaseModel):
    """One run of a flow."""

    id: int
    flow_id: int
    flow: str
    status: Literal["pending", "running", "succeeded", "failed", "cancelled"]
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


class DeadLetterOut(BaseModel):
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


class _Page(BaseModel):
    total: int = Field(description="How many records match, in all.")
    offset: int
    limit: int


class FlowPage(_Page):
    """A page of flows, by name."""

    items: list[FlowOut]


class RunPage(_Page):
    """A page of runs, newest first."""

    items: list[RunOut]


class DeadLetterPage(_Page):
    """A page of dead letters, newest first."""

    items: list[DeadLetterOut]


class ReplayOut(BaseModel):
    """What a replay did: ids written through, and ids that failed again (with why)."""

    replayed: list[int]
    failed: dict[str, str]
    written: int


class FlowStatsOut(BaseModel):
    """Aggregates over a flow's most recent finished runs."""

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


class BeatSummaryOut(BaseModel):
    """What one heartbeat claimed. Claimed runs go on in the background (``dispatched``)."""

    worker_id: str
    started_at: datetime
    duration_s: float
    reclaimed: list[int]
    claimed: list[int]
    succeeded: list[int]
    failed: list[int]
    interrupted: list[int]
    lost: list[int]
    dispatched: list[int]
    runs: list[RunOut]


class ConnectorTypes(BaseModel):
    """The type names usable in specs."""

    sources: list[str]
    sinks: list[str]
    runtimes: list[str]


class HealthOut(BaseModel):
    """Whether the engine can do its job."""

    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["ok", "unavailable"]
    last_heartbeat_at: datetime | None = None
    heartbeat_age_s: float | None = None
    flows_overdue: int | None = None
    flows_active: int | None = None
    flows_paused: int | None = None
    runs_pending: int | None = None
    runs_running: int | None = None
    problems: list[str] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """An error. ``option`` names the field or option at fault, when one is."""

    error: str
    request_id: str
    option: str | None = None
    details: list[dict[str, Any]] | None = None
