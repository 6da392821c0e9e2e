"""Runtimes decide where and when a flow runs; the :class:`~active_data_flow.runner.Runner`
runs it.

A runtime is options (validated like a connector's, stored as ``{"type", "config"}``) plus
:meth:`Runtime.execute`, its way of running a flow: the inline runtime runs it now, the
heartbeat runtime records it for the scheduler, Celery enqueues it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from active_data_flow.connector import Configurable, _split_spec
from active_data_flow.errors import ConfigurationError
from active_data_flow.registry import runtime_class
from active_data_flow.runner import Runner

if TYPE_CHECKING:
    from active_data_flow.flow import DataFlow

__all__ = [
    "CRON_ALIASES",
    "MAX_INTERVAL",
    "MIN_INTERVAL",
    "Runtime",
    "RuntimeConfig",
    "check_interval",
    "expand_cron",
]

#: The shortest interval, in seconds: 1 ms. Timestamps are kept to the microsecond, so a
#: shorter step cannot be represented; anything shorter than the heartbeat means "due at
#: every beat" anyway (tests and busy workers use a few milliseconds for that).
MIN_INTERVAL = 0.001
#: The longest interval, in seconds: one (leap) year. Longer schedules are better written
#: as cron expressions, and next-run arithmetic stays far from the end of the calendar.
MAX_INTERVAL = 366 * 86_400.0

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")

#: Cron's shorthands, accepted as ``interval`` and stored as the five fields they stand for.
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand_cron(expression: str) -> str:
    """``expression`` with a cron shorthand (``@daily``, ``@hourly``...) replaced by the
    five fields it stands for (``0 0 * * *``); anything else unchanged."""
    return CRON_ALIASES.get(expression.strip().lower(), expression)


class RuntimeConfig(BaseModel):
    """Options every runtime accepts.

    Attributes:
        batch_size: the most messages per batch; the cursor is checkpointed after each
            batch. The default, 10,000, keeps the per-commit cost of database sinks small
            (one durable commit per 1,000 rows costs PostgreSQL about a third of its
            throughput); a crash re-reads at most one batch.
        batch_seconds: a batch also ends once it has taken this long (checked every few
            hundred messages), so slow sources and transforms still checkpoint often.
            ``None``: only ``batch_size`` ends a batch.
        enabled: a disabled runtime's flows are never run by a scheduler.
        interval: how often a scheduled flow is due: seconds, or a cron expression
            (five fields, e.g. ``"*/5 * * * *"``). ``None`` means on demand only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=10_000, ge=1, le=1_000_000)
    batch_seconds: float | None = Field(default=5.0, gt=0)
    enabled: bool = True
    interval: float | str | None = None

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str):
            value = expand_cron(value)
            fields = value.split()
            if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
                raise ValueError(
                    f"not a number of seconds or a cron expression: {value!r} (a cron "
                    "expression has five or six fields, e.g. '*/5 * * * *', or is one of "
                    f"{', '.join(CRON_ALIASES)})")
        elif value is not None:
            check_interval(value)
        return value


def check_interval(seconds: float) -> float:
    """``seconds`` when it is a usable interval: finite, from :data:`MIN_INTERVAL` (1 ms) to
    :data:`MAX_INTERVAL` (one year).

    Raises:
        ValueError: saying the range.
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or not (
            MIN_INTERVAL <= seconds <= MAX_INTERVAL):
        raise ValueError(f"must be a finite number of seconds from {MIN_INTERVAL:g} (1 ms) to "
                         f"{MAX_INTERVAL:.0f} (one year), or a cron expression; got {seconds!r}")
    return seconds


class Runtime(Configurable):
    """Base class of runtimes.

    ``Runtime(**options)`` validates its options like a connector does; subclasses extend
    ``Config`` and provide a :class:`Runner`. ``execute(flow)`` is the runtime's way of
    running a flow: inline runs it now, a scheduler records it, Celery enqueues it.
    """

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[RuntimeConfig]] = RuntimeConfig
    config: RuntimeConfig
    _kind = "runtime"
    _register_with = "@register_runtime(...)"

    @property
    def batch_size(self) -> int:
        """Messages per batch and checkpoint."""
        return self.config.batch_size

    @property
    def enabled(self) -> bool:
        """Whether schedulers run flows on this runtime."""
        return self.config.enabled

    @property
    def interval(self) -> float | str | None:
        """Seconds between runs, a cron expression, or ``None`` (on demand)."""
        return self.config.interval

    def runner(self) -> Runner:
        """The runner that executes flows for this runtime."""
        return Runner(self)

    def execute(self, flow: DataFlow, **options: Any) -> Any:
        """Run ``flow`` the way this runtime runs flows (inline: now, in this process)."""
        return self.runner().run(flow, **options)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Self:
        """Build the runtime a spec describes, resolving its type through the registry."""
        type_name, config = _split_spec(spec, "runtime")
        klass = runtime_class(type_name)
        if not issubclass(klass, cls):
            raise ConfigurationError(
                f"runtime type {type_name!r} is not a {cls.__qualname__}", option="type"
            )
        return klass(**config)
