"""When a flow is due next: fixed intervals and cron expressions, DST-safe.

* An interval of ``n`` seconds keeps its cadence: the next slot is the first
  ``previous + k * n`` after now, so a late or long run does not shift the schedule, and
  missed slots are not made up (one run, not a burst).
* A cron expression is evaluated in the runtime's ``timezone`` (default UTC). Across daylight
  saving changes, a job pinned to particular hours runs once per matching wall-clock time: a
  time skipped when clocks go forward runs right after the change, and a time repeated when
  clocks go back runs on its first occurrence only. A job whose hour field is a wildcard
  (``*/15 * * * *``) keeps its spacing in real time instead.

All datetimes taken and returned are aware; results are in UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtime import check_interval, expand_cron
from active_data_flow.runtimes.heartbeat._checks import check_timezone, cron_field_problem

__all__ = ["Schedule", "interval_of", "schedule_of"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A flow's schedule: every ``seconds``, or at the times a ``cron`` expression matches.

    Attributes:
        seconds: the interval, when the schedule is an interval.
        cron: the cron expression, when it is one.
        timezone: the zone the cron expression is read in.
    """

    seconds: float | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def first_due(self, now: datetime) -> datetime:
        """When a newly scheduled (created, resumed) flow is first due: now for an interval,
        the next matching time for a cron expression."""
        if self.seconds is not None:
            return now.astimezone(UTC)
        return self._cron_after(now)

    def next_due(self, previous: datetime, now: datetime) -> datetime:
        """The slot after ``previous`` (the run that just ended was due then), after ``now``."""
        if self.seconds is not None:
            step = timedelta(seconds=self.seconds)
            if previous >= now:
                return (previous + step).astimezone(UTC)
            k = math.floor((now - previous) / step) + 1
            return (previous + k * step).astimezone(UTC)
        return self._cron_after(max(previous, now))

    def _cron_after(self, after: datetime) -> datetime:
        assert self.cron is not None
        zone = ZoneInfo(self.timezone)
        pinned_hours = self.cron.split()[1] != "*" and not self.cron.split()[1].startswith("*/")
        it = croniter(self.cron, after.astimezone(zone))
        while True:
            candidate: datetime = it.get_next(datetime)
            if pinned_hours and _second_occurrence(candidate, zone):
                continue  # the wall-clock time already happened once today
            return candidate.astimezone(UTC)

    def describe(self) -> str:
        """``"every 60s"`` or ``"cron */5 * * * * (Europe/Paris)"``."""
        if self.seconds is not None:
            return f"every {self.seconds:g}s"
        zone = "" if self.timezone == "UTC" else f" ({self.timezone})"
        return f"cron {self.cron}{zone}"


def _second_occurrence(moment: datetime, zone: ZoneInfo) -> bool:
    # Read as its first occurrence, the same wall-clock time has another UTC offset.
    first = moment.replace(tzinfo=None).replace(tzinfo=zone, fold=0)
    return first.utcoffset() != moment.utcoffset()


def interval_of(runtime_spec: dict[str, Any]) -> float | str | None:
    """A runtime spec's ``interval`` as written (seconds or cron), ``None`` when the flow runs
    on demand only (no interval, or the runtime is disabled). Does not validate."""
    config = runtime_spec.get("config") or {}
    if config.get("enabled", True) is False:
        return None
    value = config.get("interval")
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None


def schedule_of(runtime_spec: dict[str, Any]) -> Schedule | None:
    """The schedule a runtime spec describes, or ``None`` (on demand, or disabled).

    Raises:
        ConfigurationError: the cron expression or the timezone is invalid.
    """
    config = runtime_spec.get("config") or {}
    if config.get("enabled", True) is False:
        return None
    interval = config.get("interval")
    timezone = config.get("timezone") or "UTC"
    if interval is None:
        return None
    if isinstance(interval, bool):
        raise ConfigurationError(f"interval must be seconds or cron, got {interval!r}",
                                 option="interval")
    if isinstance(interval, (int, float)):
        try:
            return Schedule(seconds=float(check_interval(interval)))
        except ValueError as exc:
            raise ConfigurationError(f"interval {exc}", option="interval") from None
    if isinstance(interval, str):
        interval = expand_cron(interval)
    if not isinstance(interval, str) or not croniter.is_valid(interval):
        raise ConfigurationError(f"invalid cron expression {interval!r}{_cron_problem(interval)}",
                                 option="interval")
    check_timezone(timezone)
    if not _ever_matches(interval):
        raise ConfigurationError(
            f"cron expression {interval!r} never matches a date (e.g. the 30th of February)",
            option="interval")
    return Schedule(cron=interval, timezone=timezone)


def _cron_problem(expression: object) -> str:
    """Why a cron expression is invalid, as a clause (``": the hour field '25' is..."``)."""
    if not isinstance(expression, str):
        return ""
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (f": expected five fields (minute hour day-of-month month day-of-week, e.g. "
                f"'0 2 * * *'), got {len(fields)}")
    problem = cron_field_problem(expression)
    return f": {problem}" if problem else ""


@lru_cache(maxsize=1024)
def _ever_matches(expression: str) -> bool:
    """Whether a valid cron expression matches some time in the coming years (croniter
    gives up after searching about fifty)."""
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True
