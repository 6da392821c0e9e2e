"""Store records as the web shows them: plain dicts, every secret masked.

The API returns these dicts (validated against :mod:`.api.schemas`) and the pages render
them, so a password can reach neither by forgetting to mask it in one place.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from active_data_flow.masking import mask
from active_data_flow.runtimes.heartbeat import (
    BeatSummary,
    DeadLetter,
    FlowRecord,
    FlowStats,
    Page,
    ReplayReport,
    RunRecord,
)

__all__ = [
    "beat_view",
    "dead_letter_view",
    "flow_view",
    "page_view",
    "partition_view",
    "replay_view",
    "run_view",
    "stats_view",
]


def _masked(record: Any) -> dict[str, Any]:
    """A record's fields, datetimes as ISO 8601 text, every secret masked.

    Cheaper than ``record.to_dict()`` followed by masking: :func:`mask` copies containers
    anyway, so the deep copy ``dataclasses.asdict`` makes would be a second one.
    """
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else mask(value)
    return out


def flow_view(record: FlowRecord) -> dict[str, Any]:
    """A flow as a JSON-safe dict with its specs, cursor and errors masked."""
    data = _masked(record)
    data["schedule"] = record.schedule
    return data


def run_view(record: RunRecord) -> dict[str, Any]:
    """A run as a JSON-safe dict; error texts and tracebacks masked."""
    return _masked(record)


def partition_view(record: Any) -> dict[str, Any]:
    """One part of a partitioned run (any record dataclass), masked."""
    return _masked(record)


def dead_letter_view(record: DeadLetter) -> dict[str, Any]:
    """A dead letter as a JSON-safe dict, masked."""
    return _masked(record)


def stats_view(stats: FlowStats) -> dict[str, Any]:
    """Flow statistics as a JSON-safe dict."""
    return stats.to_dict()


def replay_view(report: ReplayReport) -> dict[str, Any]:
    """A replay report with string keys (JSON objects have no integer keys)."""
    return {"replayed": list(report.replayed),
            "failed": {str(k): mask(v) for k, v in report.failed.items()},
            "written": report.written}


def beat_view(summary: BeatSummary) -> dict[str, Any]:
    """A heartbeat summary, its runs masked."""
    data = summary.to_dict()
    data["runs"] = [run_view(r) for r in summary.runs]
    return data


def page_view(page: Page[Any], view: Any) -> dict[str, Any]:
    """A page of records through ``view``."""
    return {"items": [view(item) for item in page.items], "total": page.total,
            "offset": page.offset, "limit": page.limit}
