"""Store records as the web shows them: plain dicts, every secret masked.

The API returns these dicts (validated against the records' own models) and the pages
render them, so a password can reach neither by forgetting to mask it in one place.
"""

from __future__ import annotations

from typing import Any

from active_data_flow.masking import mask
from active_data_flow.runtimes.heartbeat.engine.beat import BeatSummary
from active_data_flow.runtimes.heartbeat.engine.deadletters import ReplayReport
from active_data_flow.runtimes.heartbeat.store import (
    DeadLetter,
    FlowRecord,
    FlowStats,
    Page,
    PartitionRecord,
    RunRecord,
)
from active_data_flow.runtimes.heartbeat.store.codec import encode

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


def flow_view(record: FlowRecord) -> dict[str, Any]:
    """A flow (its spec's fields and its state's, side by side) with specs, cursor and
    errors masked."""
    return mask(record.to_dict())  # type: ignore[no-any-return]


def run_view(record: RunRecord) -> dict[str, Any]:
    """A run as a JSON-safe dict; error texts and tracebacks masked."""
    return mask(record.to_dict())  # type: ignore[no-any-return]


def partition_view(record: PartitionRecord) -> dict[str, Any]:
    """One part of a partitioned run, masked."""
    return mask(record.to_dict())  # type: ignore[no-any-return]


def dead_letter_view(record: DeadLetter) -> dict[str, Any]:
    """A dead letter as a JSON-safe dict, masked; its message, metadata and position in
    the store's tagged JSON (:mod:`~active_data_flow.runtimes.heartbeat.store.codec`), so
    that no value is lost or refused on the way."""
    data = record.model_copy(update={"message": {}, "metadata": {}, "position": None}).to_dict()
    data.update(message=encode(record.message), metadata=encode(record.metadata),
                position=encode(record.position))
    return mask(data)  # type: ignore[no-any-return]


def stats_view(stats: FlowStats) -> dict[str, Any]:
    """Flow statistics as a JSON-safe dict."""
    return stats.to_dict()


def replay_view(report: ReplayReport) -> dict[str, Any]:
    """A replay report with string keys (JSON objects have no integer keys)."""
    return {"replayed": list(report.replayed),
            "failed": {str(k): mask(v) for k, v in report.failed.items()},
            "written": report.written, "replayed_count": report.replayed_count,
            "failed_count": report.failed_count, "summary": report.summary}


def beat_view(summary: BeatSummary) -> dict[str, Any]:
    """A heartbeat summary, its runs masked."""
    data = summary.to_dict()
    data["runs"] = [run_view(r) for r in summary.runs]
    return data


def page_view(page: Page[Any], view: Any) -> dict[str, Any]:
    """A page of records through ``view``."""
    return {"items": [view(item) for item in page.items], "total": page.total,
            "offset": page.offset, "limit": page.limit, "total_is_exact": page.total_is_exact}
