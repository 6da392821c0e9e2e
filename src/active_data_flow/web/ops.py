"""Operational routes: health, the heartbeat, Prometheus metrics, the OpenAPI document and
static assets."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from active_data_flow.masking import mask_text
from active_data_flow.runtimes.heartbeat.engine.beat import BackgroundRuns, beat
from active_data_flow.runtimes.heartbeat.engine.executor import Executor
from active_data_flow.web.api.deps import Store, errors, get_settings
from active_data_flow.web.api.schemas import BeatSummaryOut, HealthOut
from active_data_flow.web.security import bearer_token, same_secret
from active_data_flow.web.settings import WebSettings
from active_data_flow.web.views import beat_view

__all__ = ["assets_router", "health_router", "heartbeat_router", "require_heartbeat_token"]

log = logging.getLogger(__name__)

health_router = APIRouter(tags=["operations"])
heartbeat_router = APIRouter(tags=["operations"])
assets_router = APIRouter(include_in_schema=False)

Settings = Annotated[WebSettings, Depends(get_settings)]


@health_router.get("/health", response_model=HealthOut, operation_id="health",
                   responses={503: {"model": HealthOut, "description": "Database unreachable."}})
def health(store: Store, settings: Settings) -> Any:
    """Whether the database answers, how old the last heartbeat is, how many flows are
    overdue. 200 when usable (``ok`` or ``degraded``), 503 when the database is down.
    No authentication: load balancers and monitors call it."""
    try:
        gauges = store.metrics()
    except Exception as exc:
        log.warning("health: the flow store is unavailable: %s", mask_text(str(exc)),
                    extra={"action": "health_unavailable"})
        body = HealthOut(status="unavailable", database="unavailable",
                         problems=["the flow store's database is unreachable"])
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    problems = _problems(gauges, settings)
    return HealthOut(
        status="degraded" if problems else "ok", database="ok",
        last_heartbeat_at=gauges["last_heartbeat_at"],
        heartbeat_age_s=gauges["last_heartbeat_age_s"],
        flows_overdue=gauges["runs_overdue"], flows_active=gauges["flows_active"],
        flows_paused=gauges["flows_paused"], runs_pending=gauges["runs_pending"],
        runs_running=gauges["runs_running"], problems=problems,
    )


def _problems(gauges: dict[str, Any], settings: WebSettings) -> list[str]:
    problems = []
    age = gauges["last_heartbeat_age_s"]
    if age is not None and age > settings.heartbeat_stale_s:
        problems.append(f"no heartbeat for {age:.0f} s")
    if age is None and gauges["runs_pending"]:
        problems.append("runs are pending but no heartbeat has ever run")
    if gauges["runs_overdue"]:
        problems.append(f"{gauges['runs_overdue']} flow(s) overdue")
    return problems


def require_heartbeat_token(request: Request, settings: Settings) -> None:
    """401 unless the request carries the configured heartbeat token: ``Authorization:
    Bearer <token>``, or ``X-ADF-Heartbeat-Token: <token>`` for callers that cannot set
    the Authorization header (both documented in docs/web.md)."""
    given = bearer_token(request) or request.headers.get("x-adf-heartbeat-token")
    expected = settings.heartbeat_token
    if expected is None or not same_secret(given, expected):
        why = ("the heartbeat is disabled: no heartbeat token is configured"
               if expected is None else "a valid heartbeat token is required")
        raise HTTPException(401, why, headers={"WWW-Authenticate": 'Bearer realm="heartbeat"'})


@heartbeat_router.post(
    "/heartbeat", response_model=BeatSummaryOut, operation_id="heartbeat",
    dependencies=[Depends(require_heartbeat_token)], responses=errors(422),
    openapi_extra={"security": [{"heartbeatToken": []}, {"heartbeatTokenHeader": []}]},
)
def heartbeat(
    request: Request, store: Store, settings: Settings,
    limit: Annotated[int | None, Query(ge=1, le=10_000,
                                       description="Claim at most this many runs.")] = None,
) -> dict[str, Any]:
    """Claim every due run and start it in the background; answer at once.

    Safe to call repeatedly and concurrently: each due run is claimed exactly once.
    Authenticate with ``Authorization: Bearer <ADF_HEARTBEAT_TOKEN>``.
    """
    summary = beat(store, background=background_runs(request), limit=limit)
    return beat_view(summary)


def background_runs(request: Request) -> BackgroundRuns:
    """The app's threads for runs its heartbeats claim (started by the first heartbeat; the
    app's lifespan shuts them down gracefully)."""
    state = request.app.state
    with state.background_lock:
        if state.background is None:
            state.background = BackgroundRuns(
                Executor(state.store, worker_id=state.settings.worker_id))
        return state.background  # type: ignore[no-any-return]


_STATIC = resources.files("active_data_flow.web") / "static"
_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "svg": "image/svg+xml"}


@assets_router.get("/static/{filename}", name="static")
def static(filename: Annotated[str, Path(pattern=r"^[a-z0-9_\-]+\.(css|js|svg)$")]) -> Response:
    """A file of the engine's static folder (its names only: no paths)."""
    asset = _STATIC / filename
    if not asset.is_file():
        raise HTTPException(404, f"no static file {filename!r}")
    return Response(asset.read_bytes(), media_type=_TYPES[filename.rsplit(".", 1)[1]],
                    headers={"Cache-Control": "private, max-age=3600"})
