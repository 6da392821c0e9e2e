"""Jinja2 set-up for the pages: autoescaping everywhere, and small display filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from active_data_flow.formatting import count, rate, throughput

__all__ = ["ago", "duration", "make_templates", "schedule_text"]


def make_templates() -> Jinja2Templates:
    """The engine's templates (from the package's ``templates`` folder)."""
    folder = resources.files("active_data_flow.web") / "templates"
    env = Environment(
        loader=FileSystemLoader(str(folder)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,  # a typo in a template fails loudly in tests
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(ago=ago, duration=duration, pretty_json=pretty_json,
                       schedule=schedule_text, number=number, when=when,
                       rate=rate, throughput=throughput)
    return Jinja2Templates(env=env)


def _parse(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def when(value: Any) -> str:
    """A timestamp as ``2024-05-01 12:00:03 UTC`` (``—`` when there is none)."""
    moment = _parse(value)
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: Any, now: datetime | None = None) -> str:
    """A timestamp relative to now: ``3 min ago``, ``in 2 h``, ``—``."""
    moment = _parse(value)
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    text = _span(abs(seconds))
    if text == "now":
        return "just now"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def _span(seconds: float) -> str:
    if seconds < 2:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def duration(seconds: Any) -> str:
    """Seconds as ``850 ms``, ``12.4 s``, ``3 min 20 s``."""
    if seconds is None:
        return "—"
    value = float(seconds)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def number(value: Any) -> str:
    """An integer with separators: ``1,250,000`` (:func:`active_data_flow.formatting.count`)."""
    return count(value)


def pretty_json(value: Any) -> str:
    """A JSON value, indented for a ``<pre>`` block."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def schedule_text(value: Any) -> str:
    """A flow's schedule in words: ``every 5 min``, ``cron */5 * * * *``, ``on demand``."""
    if value is None:
        return "on demand"
    if isinstance(value, str):
        return f"cron {value}"
    seconds = float(value)
    if seconds % 3600 == 0:
        return f"every {seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"every {seconds / 60:g} min"
    return f"every {seconds:g} s"
