"""``/api/runs`` and ``/api/connectors``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from active_data_flow.flow import FLOW_NAME_PATTERN
from active_data_flow.registry import available_connectors, available_runtimes
from active_data_flow.web.api.deps import Limit, Offset, Store, errors
from active_data_flow.web.api.schemas import MAX_ID, ConnectorTypes, RunOut, RunPage
from active_data_flow.web.views import page_view, run_view

__all__ = ["router"]

router = APIRouter()


@router.get("/runs", response_model=RunPage, operation_id="list_runs", tags=["runs"],
            responses=errors(404, 422))
def list_runs(
    store: Store, offset: Offset = 0, limit: Limit = 50,
    flow: Annotated[str | None, Query(pattern=FLOW_NAME_PATTERN)] = None,
    status: Annotated[Literal["pending", "running", "succeeded", "failed", "cancelled"]
                      | None, Query()] = None,
) -> dict[str, Any]:
    """Runs of every flow (or of ``flow``), newest first."""
    return page_view(store.list_runs(flow=flow, status=status, offset=offset, limit=limit),
                     run_view)


@router.get("/runs/{run_id}", response_model=RunOut, operation_id="get_run", tags=["runs"],
            responses=errors(404, 422))
def get_run(store: Store, run_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
    """One run: counts, timings, cursor range, error and traceback."""
    return run_view(store.get_run(run_id))


@router.get("/connectors", response_model=ConnectorTypes, operation_id="list_connectors",
            tags=["connectors"], responses=errors())
def list_connectors() -> dict[str, Any]:
    """The source, sink and runtime type names a spec may use."""
    return {"sources": available_connectors("source"), "sinks": available_connectors("sink"),
            "runtimes": available_runtimes()}
