"""Checks of a schedule that need no cron library, so ``Heartbeat(...)`` in a flow module
refuses a cron field out of range or an unknown time zone where the flow is defined (the
full check, :func:`.schedule.schedule_of`, runs when the flow is synced)."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from active_data_flow.errors import ConfigurationError, did_you_mean

__all__ = ["CRON_FIELDS", "check_timezone", "cron_field_problem"]

#: The fields of a cron expression: name, lowest and highest value.
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12),
               ("day-of-week", 0, 7), ("second", 0, 59))

_NUMBER = re.compile(r"\d+")


def cron_field_problem(expression: str) -> str | None:
    """Why a five- or six-field cron expression cannot match (a field's number out of
    range, a step of 0), or ``None`` when its numbers are fine (names such as ``MON`` and
    the other syntax are left to the cron library)."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        return None
    for text, (name, low, high) in zip(fields, CRON_FIELDS, strict=False):
        for item in text.split(","):
            value, _, step = item.partition("/")
            if step and step.isdigit() and int(step) == 0:
                return f"the {name} field {text!r} has a step of 0"
            for number in _NUMBER.findall(value.split("#")[0]):
                if not low <= int(number) <= high:
                    return f"the {name} field {text!r} is out of range ({low}-{high})"
    return None


def check_timezone(timezone: object) -> str:
    """``timezone`` when it is an IANA time zone name this system knows.

    Raises:
        ConfigurationError: naming ``timezone``, with the closest known name.
    """
    if isinstance(timezone, str):
        try:
            ZoneInfo(timezone)
            return timezone
        except (ZoneInfoNotFoundError, ValueError):
            pass
    hint = did_you_mean(timezone, available_timezones()) if isinstance(timezone, str) else ""
    raise ConfigurationError(f"unknown timezone {timezone!r}{hint}", option="timezone")
