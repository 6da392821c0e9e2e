"""The JSON shapes of the API (its OpenAPI document is generated from these).

Flows, runs, parts, dead letters and heartbeats are the core's and the store's own models
(:class:`~active_data_flow.FlowSpec` and the records): nothing here repeats their fields.
Requests are strict (unknown fields are errors); responses are snapshots of the store's
records with every secret masked (:mod:`active_data_flow.masking`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import FlowSpec
from active_data_flow.runtimes.heartbeat.engine.beat import BeatSummary
from active_data_flow.runtimes.heartbeat.engine.deadletters import ReplayReport
from active_data_flow.runtimes.heartbeat.store import (
    DeadLetter,
    FlowState,
    FlowStats,
    Page,
    PartitionRecord,
    RunRecord,
)
from active_data_flow.runtimes.heartbeat.store.base import check_json_value

__all__ = [
    "MAX_ID",
    "BeatSummaryOut",
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
    "PartitionOut",
    "ReplayOut",
    "ReplayRequest",
    "RunOut",
    "RunPage",
]

#: Largest id the API takes: exact in JSON numbers everywhere (JavaScript's safe integers).
MAX_ID = 2**53 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A new flow: the :class:`~active_data_flow.FlowSpec` itself.
FlowSpecIn = FlowSpec


class FlowOut(FlowState, FlowSpec):
    """A stored flow: its spec's fields and the store's, side by side (secrets masked)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


def _patch_model() -> type[BaseModel]:
    """Every field of the spec but ``name``, each optional: the fields given replace the
    stored ones. Derived from :class:`FlowSpec`, so a new flow option is editable at once."""
    fields: dict[str, Any] = {}
    for name, info in FlowSpec.model_fields.items():
        if name == "name":
            continue
        annotation: Any = Annotated[info.annotation, *info.metadata] if info.metadata else (
            info.annotation)
        fields[name] = (annotation | None, Field(default=None, description=info.description))
    return create_model("FlowPatch", __config__=ConfigDict(extra="forbid"),
                        __doc__="Changes to a spec flow: the fields given replace the stored "
                                "ones.", **fields)


FlowPatch = _patch_model()
RunOut = RunRecord
PartitionOut = PartitionRecord
DeadLetterOut = DeadLetter
FlowStatsOut = FlowStats
ReplayOut = ReplayReport
BeatSummaryOut = BeatSummary
FlowPage = Page[FlowOut]
RunPage = Page[RunRecord]
DeadLetterPage = Page[DeadLetter]


class CursorReset(_Strict):
    """Where the next run resumes: a position the source understands, or null (start).
    Plain JSON only: finite numbers, no NUL character, nested at most 64 levels."""

    cursor: Any = None

    @field_validator("cursor")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        try:
            return check_json_value(value, "cursor")
        except ConfigurationError as exc:
            raise ValueError(str(exc).removeprefix("cursor: ")) from None


class ReplayRequest(_Strict):
    """Which dead letters to replay (all unreplayed ones when ``ids`` is null)."""

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(default=None,
                                                                   max_length=10_000)


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
