"""``/api/flows``: create, read, edit, delete, pause, resume, trigger, cursor, dead letters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response

from active_data_flow.masking import unmask
from active_data_flow.runtimes.heartbeat.engine.deadletters import replay
from active_data_flow.web.api.deps import (
    FlowNamePath,
    Limit,
    Offset,
    Store,
    errors,
    spec_dict,
)
from active_data_flow.web.api.schemas import (
    CursorReset,
    DeadLetterPage,
    FlowOut,
    FlowPage,
    FlowPatch,
    FlowSpecIn,
    FlowStatsOut,
    ReplayOut,
    ReplayRequest,
    RunOut,
    RunPage,
)
from active_data_flow.web.views import (
    dead_letter_view,
    flow_view,
    page_view,
    replay_view,
    run_view,
    stats_view,
)

__all__ = ["router"]

router = APIRouter(prefix="/flows", tags=["flows"])

# OpenAPI links let stateful testers (and readers) follow a created flow to its operations.
_FLOW_LINKS = {
    name: {"operationId": op, "parameters": {"name": "$response.body#/name"}}
    for name, op in (("GetFlow", "get_flow"), ("UpdateFlow", "update_flow"),
                     ("DeleteFlow", "delete_flow"), ("TriggerFlow", "trigger_flow"),
                     ("PauseFlow", "pause_flow"), ("ResumeFlow", "resume_flow"),
                     ("FlowRuns", "list_flow_runs"), ("ResetCursor", "reset_cursor"))
}


@router.get("", response_model=FlowPage, operation_id="list_flows", responses=errors(422))
def list_flows(
    store: Store, offset: Offset = 0, limit: Limit = 50,
    status: Annotated[Literal["active", "paused"] | None, Query()] = None,
    search: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                                        description="Part of the name.")] = None,
) -> dict[str, Any]:
    """Flows ordered by name, filtered by status and by part of the name."""
    page = store.list_flows(status=status, search=search, offset=offset, limit=limit)
    return page_view(page, flow_view)


@router.post("", status_code=201, response_model=FlowOut, operation_id="create_flow",
             responses={**errors(409, 422), 201: {"links": _FLOW_LINKS}})
def create_flow(
    store: Store, spec: FlowSpecIn,
    paused: Annotated[bool, Query(description="Store the flow paused.")] = False,
) -> dict[str, Any]:
    """Create a flow from its JSON spec.

    Types resolve through the connector registry only; an unknown type or a bad option is
    a 422 naming it, and nothing is stored.
    """
    return flow_view(store.create_flow(spec, paused=paused))


@router.get("/{name}", response_model=FlowOut, operation_id="get_flow",
            responses=errors(404, 422))
def get_flow(store: Store, name: FlowNamePath) -> dict[str, Any]:
    """One flow: specs, status, cursor, schedule, last run."""
    return flow_view(store.get_flow(name))


@router.patch("/{name}", response_model=FlowOut, operation_id="update_flow",
              responses=errors(404, 409, 422))
def update_flow(
    store: Store, name: FlowNamePath, changes: FlowPatch,  # type: ignore[valid-type]
) -> dict[str, Any]:
    """Change a spec flow (code-defined flows change with their code).

    Masked secrets (``***``) sent back unchanged keep their stored values.
    """
    current = store.get_flow(name)
    patch = unmask(spec_dict(changes), current.spec.to_dict())
    return flow_view(store.update_flow(name, patch))


@router.delete("/{name}", status_code=204, operation_id="delete_flow",
               responses=errors(404, 409, 422))
def delete_flow(store: Store, name: FlowNamePath) -> Response:
    """Delete a flow with its runs and dead letters (refused while it runs)."""
    store.delete_flow(name)
    return Response(status_code=204)


@router.post("/{name}/trigger", status_code=202, response_model=RunOut,
             operation_id="trigger_flow",
             responses={**errors(404, 422), 202: {"links": {"GetRun": {
                 "operationId": "get_run", "parameters": {"run_id": "$response.body#/id"}}}}})
def trigger_flow(store: Store, name: FlowNamePath) -> dict[str, Any]:
    """Run the flow at the next heartbeat (paused flows too, once). Returns its run."""
    return run_view(store.trigger(name))


@router.post("/{name}/pause", response_model=FlowOut, operation_id="pause_flow",
             responses=errors(404, 422))
def pause_flow(store: Store, name: FlowNamePath) -> dict[str, Any]:
    """Stop scheduling the flow; its pending run is cancelled, a running one ends."""
    return flow_view(store.pause(name))


@router.post("/{name}/resume", response_model=FlowOut, operation_id="resume_flow",
             responses=errors(404, 422))
def resume_flow(store: Store, name: FlowNamePath) -> dict[str, Any]:
    """Schedule the flow again."""
    return flow_view(store.resume(name))


@router.post("/{name}/cursor/reset", response_model=FlowOut, operation_id="reset_cursor",
             responses=errors(404, 409, 422))
def reset_cursor(
    store: Store, name: FlowNamePath,
    body: Annotated[CursorReset | None, Body()] = None,
) -> dict[str, Any]:
    """Set where the next run resumes (no body or a null cursor: from the beginning)."""
    cursor = body.cursor if body is not None else None
    return flow_view(store.reset_cursor(name, cursor))


@router.get("/{name}/runs", response_model=RunPage, operation_id="list_flow_runs",
            responses=errors(404, 422))
def list_flow_runs(
    store: Store, name: FlowNamePath, offset: Offset = 0, limit: Limit = 50,
    status: Annotated[Literal["pending", "running", "succeeded", "failed", "cancelled"]
                      | None, Query()] = None,
) -> dict[str, Any]:
    """The flow's runs, newest first."""
    return page_view(store.list_runs(flow=name, status=status, offset=offset, limit=limit),
                     run_view)


@router.get("/{name}/stats", response_model=FlowStatsOut, operation_id="flow_stats",
            responses=errors(404, 422))
def flow_stats(
    store: Store, name: FlowNamePath,
    window: Annotated[int, Query(ge=1, le=10_000, description="Recent runs to count.")] = 100,
) -> dict[str, Any]:
    """Totals and durations over the flow's most recent finished runs."""
    return stats_view(store.flow_stats(name, window=window))


@router.get("/{name}/dead-letters", response_model=DeadLetterPage,
            operation_id="list_dead_letters", responses=errors(404, 422))
def list_dead_letters(
    store: Store, name: FlowNamePath, offset: Offset = 0, limit: Limit = 50,
    include_replayed: bool = False,
) -> dict[str, Any]:
    """Messages the flow could not handle, newest first."""
    store.get_flow(name)  # 404 for an unknown flow rather than an empty page
    page = store.list_dead_letters(name, offset=offset, limit=limit,
                                   include_replayed=include_replayed)
    return page_view(page, dead_letter_view)


@router.post("/{name}/dead-letters/replay", response_model=ReplayOut,
             operation_id="replay_dead_letters", responses=errors(404, 409, 422))
def replay_dead_letters(
    store: Store, name: FlowNamePath,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Send dead letters through the flow's transform and sinks again."""
    ids = body.ids if body is not None else None
    return replay_view(replay(store, name, ids))
