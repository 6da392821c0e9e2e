"""``GET /metrics``: the store's state in the Prometheus text format.

A custom collector reads the store at scrape time (the standard ``prometheus_client``
library renders it), so the figures cover runs executed by any process, not only this one.
Each app has its own registry: two engines in one process do not clash.

Per-flow series are gauges over the flow's most recent finished runs (``flow_stats``; the
store keeps no all-time totals per flow) and its record (cursor age). They are computed for
at most ``max_flows`` flows per scrape, and the source-side cursor lag (messages still to
read) only within a time budget, because it asks each flow's source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from active_data_flow.runtimes.heartbeat.engine.flows import cursor_lag
from active_data_flow.runtimes.heartbeat.store import FlowRecord, Store
from active_data_flow.web.api.deps import errors

__all__ = ["StoreCollector", "metrics_registry", "router"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["operations"])


class StoreCollector(Collector):
    """Collects flow-store gauges and per-flow run figures at scrape time.

    Args:
        store: the flow store.
        max_flows: per-flow series for at most this many flows (by name).
        window: how many recent finished runs the per-flow figures cover.
        lag_budget_s: time allowed per scrape for asking sources their cursor lag.
    """

    def __init__(self, store: Store, *, max_flows: int = 500, window: int = 1000,
                 lag_budget_s: float = 2.0) -> None:
        self.store = store
        self.max_flows = max_flows
        self.window = window
        self.lag_budget_s = lag_budget_s

    def describe(self) -> list[Metric]:
        return []  # collected lazily: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        gauges = self.store.metrics()
        flows = GaugeMetricFamily("adf_flows", "Flows in the store, by status.",
                                  labels=["status"])
        flows.add_metric(["active"], gauges["flows_active"])
        flows.add_metric(["paused"], gauges["flows_paused"])
        yield flows
        live = GaugeMetricFamily("adf_runs_live", "Runs pending or running.", labels=["status"])
        live.add_metric(["pending"], gauges["runs_pending"])
        live.add_metric(["running"], gauges["runs_running"])
        yield live
        yield GaugeMetricFamily("adf_runs_overdue", "Runs due for over a minute, unclaimed.",
                                value=gauges["runs_overdue"])
        age = gauges["last_heartbeat_age_s"]
        yield GaugeMetricFamily("adf_heartbeat_age_seconds",
                                "Seconds since the last heartbeat (NaN: never).",
                                value=float("nan") if age is None else age)
        yield from self._per_flow()

    def _per_flow(self) -> Iterator[Metric]:
        recent = f"the flow's last {self.window} finished runs"
        rows = GaugeMetricFamily("adf_flow_rows", f"Rows handled by {recent}, by kind "
                                 "(read, written, skipped, failed).", labels=["flow", "kind"])
        runs = GaugeMetricFamily("adf_flow_runs", f"Outcomes of {recent}.",
                                 labels=["flow", "status"])
        avg = GaugeMetricFamily("adf_flow_run_duration_seconds_avg",
                                f"Mean duration of {recent}.", labels=["flow"])
        longest = GaugeMetricFamily("adf_flow_run_duration_seconds_max",
                                    f"Longest of {recent}.", labels=["flow"])
        cursor_age = GaugeMetricFamily("adf_flow_cursor_age_seconds",
                                       "Seconds since the flow's cursor last moved.",
                                       labels=["flow"])
        lag = GaugeMetricFamily("adf_flow_cursor_lag_messages",
                                "Messages the source holds after the cursor (sources that "
                                "can tell).", labels=["flow"])
        page = self.store.list_flows(limit=min(self.max_flows, 1000))
        now = datetime.now(UTC)
        deadline = time.monotonic() + self.lag_budget_s
        for flow in page.items:
            stats = self.store.flow_stats(flow.name, window=self.window)
            for kind, value in (("read", stats.read), ("written", stats.written),
                                ("skipped", stats.skipped), ("failed", stats.failed_records)):
                rows.add_metric([flow.name, kind], value)
            for status in ("succeeded", "failed", "cancelled"):
                runs.add_metric([flow.name, status], getattr(stats, status))
            if stats.avg_duration_s is not None:
                avg.add_metric([flow.name], stats.avg_duration_s)
            if stats.max_duration_s is not None:
                longest.add_metric([flow.name], stats.max_duration_s)
            if flow.cursor_updated_at is not None:
                cursor_age.add_metric([flow.name], (now - flow.cursor_updated_at).total_seconds())
            if time.monotonic() < deadline:
                messages = self._lag(flow)
                if messages is not None:
                    lag.add_metric([flow.name], messages)
        yield from (rows, runs, avg, longest, cursor_age, lag)
        yield GaugeMetricFamily("adf_metrics_flows_omitted",
                                "Flows left out of the per-flow series (max_flows).",
                                value=max(0, page.total - len(page.items)))

    def _lag(self, flow: FlowRecord) -> int | None:
        try:
            return cursor_lag(flow)
        except Exception as exc:  # a source that cannot tell must not break the scrape
            log.debug("cursor lag of %s unavailable: %s", flow.name, exc)
            return None


def metrics_registry(store: Store, **options: float) -> CollectorRegistry:
    """A registry holding a :class:`StoreCollector` for ``store``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, **options))  # type: ignore[arg-type]
    return registry


def _registry(request: Request) -> CollectorRegistry:
    return request.app.state.metrics_registry  # type: ignore[no-any-return]


@router.get("/metrics", operation_id="metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format."}, **errors()})
def metrics(registry: Annotated[CollectorRegistry, Depends(_registry)]) -> Response:
    """Flow-store gauges and per-flow figures, for Prometheus to scrape."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
