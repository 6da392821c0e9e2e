"""The ``heartbeat`` runtime: flows that run themselves when a heartbeat finds them due.

This module holds the runtime's options only (schedule, retries) and imports neither the
store nor the engine, so ``runtime = Heartbeat(interval=300)`` in a flow module costs nothing
more than the core. The engine (:mod:`.engine`) claims due runs and executes them;
:meth:`Heartbeat.dispatch` is where a claimed run is handed to whatever executes it (this
process by default; a task queue for the Celery runtime).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field, model_validator

from active_data_flow.connector import option_error
from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import DataFlow
from active_data_flow.registry import register_runtime
from active_data_flow.runtime import Runtime, RuntimeConfig
from active_data_flow.runtimes.heartbeat._checks import check_timezone, cron_field_problem

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.store import ClaimedRun, RunRecord, Store

__all__ = ["Dispatch", "Heartbeat", "HeartbeatConfig"]


class HeartbeatConfig(RuntimeConfig):
    """Options of the heartbeat runtime.

    Attributes:
        interval: seconds between runs, or a cron expression; ``None``: on demand only.
        timezone: the zone a cron expression is read in (IANA name, default UTC).
        max_attempts: executions of a run before a transient failure (lost connection,
            timeout, deadlock) fails it; permanent errors fail at once.
        backoff: seconds before the first retry; doubled for each next one...
        backoff_max: ...up to this.
    """

    timezone: str = "UTC"
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: float = Field(default=1.0, ge=0, le=3600)
    backoff_max: float = Field(default=60.0, ge=0, le=86_400)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.backoff_max))

    @model_validator(mode="after")
    def _schedulable(self) -> HeartbeatConfig:
        """Refuse, where the flow is defined, a schedule no heartbeat could follow: a cron
        field out of range (``"0 25 * * *"``), an unknown time zone. (Whether a cron
        expression ever matches is checked when the flow is synced.)"""
        try:
            check_timezone(self.timezone)
        except ConfigurationError as exc:
            raise option_error("timezone", f"option 'timezone': {exc}") from None
        problem = cron_field_problem(self.interval) if isinstance(self.interval, str) else None
        if problem:
            raise option_error("interval", f"option 'interval': invalid cron expression "
                                           f"{self.interval!r}: {problem}")
        return self


class Dispatch(Protocol):
    """What :meth:`Heartbeat.dispatch` receives besides the claimed run."""

    store: Store
    worker_id: str
    background: bool

    def run_here(self, claim: ClaimedRun) -> None:
        """Execute the run in this process (now, or in background threads)."""

    def hand_off(self, claim: ClaimedRun) -> None:
        """Note that the run went elsewhere (a queue); this process stops renewing it."""


@register_runtime("heartbeat")
class Heartbeat(Runtime):
    """Run flows when they are due, from heartbeats (``adf heartbeat``, ``adf worker``, or
    the web engine's ``POST /heartbeat``); record every run in the flow store.

    Example:
        >>> from active_data_flow.runtimes.heartbeat import Heartbeat
        >>> Heartbeat(interval=300, max_attempts=5).to_dict()
        {'type': 'heartbeat', 'config': {'interval': 300.0, 'max_attempts': 5}}
        >>> Heartbeat(interval="0 2 * * *", timezone="Europe/Paris").interval
        '0 2 * * *'
    """

    Config = HeartbeatConfig
    config: HeartbeatConfig

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        return self.config.retry_delay(attempt)

    def dispatch(self, claim: ClaimedRun, context: Dispatch) -> None:
        """Hand a claimed run to its executor. The heartbeat runtime runs it in the process
        that claimed it; a distributed runtime overrides this to enqueue
        ``(claim.run_id, claim.token)`` for another process and calls
        ``context.hand_off(claim)``."""
        context.run_here(claim)

    def execute(self, flow: DataFlow, **options: Any) -> RunRecord:
        """Register ``flow``'s class in the store (``store=``, default: ``FlowStore()``) and
        trigger it: the next heartbeat runs it. Returns the pending run."""
        from active_data_flow.runtimes.heartbeat.engine.sync import sync
        from active_data_flow.runtimes.heartbeat.store import FlowStore

        store = options.get("store") or FlowStore()
        sync(store, type(flow))
        return store.trigger(flow.spec.name)
