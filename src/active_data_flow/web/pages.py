"""The HTML pages: dashboard, flow, run, dead letters, and the forms that change flows.

Everything works without JavaScript: state changes are plain form posts (with a CSRF
token) answered by a redirect back to the page (post/redirect/get), with a short notice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import FLOW_NAME_PATTERN
from active_data_flow.masking import mask, unmask
from active_data_flow.registry import available_connectors, available_runtimes
from active_data_flow.runtimes.heartbeat.engine import deadletters
from active_data_flow.runtimes.heartbeat.store import (
    FlowNotFound,
    FlowRecord,
    RunNotFound,
    failed_note,
)
from active_data_flow.runtimes.heartbeat.store import Store as FlowStore
from active_data_flow.web.api.schemas import MAX_ID
from active_data_flow.web.charts import run_history_svg
from active_data_flow.web.forms import INTERVAL_HELP, FlowForm, FormError
from active_data_flow.web.security import CSRF_COOKIE, CSRF_FIELD, Csrf
from active_data_flow.web.views import dead_letter_view, flow_view, partition_view, run_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

FlowName = Annotated[str, Path(pattern=FLOW_NAME_PATTERN)]
PageOffset = Annotated[int, Query(ge=0, le=2**31)]

NOTICES = {
    "created": "Flow created.",
    "updated": "Flow saved.",
    "triggered": "Run requested: it starts at the next heartbeat.",
    "paused": "Flow paused: it will not be scheduled until resumed.",
    "resumed": "Flow resumed.",
    "cursor": "Cursor reset.",
    "deleted": "Flow deleted.",
    "replayed": "Dead letters replayed.",
}


def _store(request: Request) -> FlowStore:
    return request.app.state.store  # type: ignore[no-any-return]


def _csrf(request: Request) -> Csrf:
    return request.app.state.csrf  # type: ignore[no-any-return]


async def _check_csrf(request: Request) -> None:
    await _csrf(request).protect(request)


CsrfChecked = Depends(_check_csrf)


def render(request: Request, template: str, context: dict[str, Any],
           status_code: int = 200) -> HTMLResponse:
    """Render a page with the shared context (settings, user, CSRF token, notice)."""
    settings = request.app.state.settings
    notice, level = _notice(request)
    user = getattr(request.state, "user", None)
    base = {"settings": settings, "user": user if isinstance(user, str) else None,
            "csrf_field": CSRF_FIELD, "csrf_token": _csrf(request).token(request),
            "notice": notice, "notice_level": level}
    response: HTMLResponse = request.app.state.templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    nonce = getattr(request.state, "csrf_new_nonce", None)
    if nonce:
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https",
                            path=request.scope.get("root_path") or "/")
    return response


def _notice(request: Request) -> tuple[str | None, str]:
    """The notice named in the query (``?notice=...``) and its level (ok, warning, error);
    a replay's notice says how many letters were replayed and how many failed again."""
    params = request.query_params
    key = params.get("notice", "")
    if key != "replayed":
        return NOTICES.get(key), "ok"
    counts = [params.get(name, "") for name in ("replayed", "failed")]
    if not all(c.isdigit() and len(c) < 10 for c in counts):
        return NOTICES[key], "ok"
    replayed, failed = (int(c) for c in counts)
    return (deadletters.replay_summary(replayed, failed),
            deadletters.replay_outcome(replayed, failed))


def _back(request: Request, route: str, notice: str, **params: Any) -> RedirectResponse:
    url = request.url_for(route, **params).include_query_params(notice=notice)
    return RedirectResponse(str(url), status_code=303)


# -- dashboard and listings ----------------------------------------------------------------
@router.get("/", name="page_dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request, offset: PageOffset = 0,
    status: Annotated[Literal["active", "paused"] | None, Query()] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Every flow: status, schedule, last and next run, throughput, failures."""
    store = _store(request)
    settings = request.app.state.settings
    page = store.list_flows(status=status, search=search or None, offset=offset,
                            limit=settings.page_size)
    late = store.now() - timedelta(seconds=settings.overdue_grace_s)
    rows = [_dashboard_row(store, record, late) for record in page.items]
    return render(request, "dashboard.html", {
        "rows": rows, "page": page, "status": status, "search": search or "",
        "gauges": store.metrics(),
    })


def _dashboard_row(store: FlowStore, record: FlowRecord, late: datetime) -> dict[str, Any]:
    """A flow with its last run's throughput (one primary-key read per row, so a page costs
    the same however long the flows' histories are) and whether its run is overdue (due
    before ``late`` and still unclaimed)."""
    flow = flow_view(record)
    flow["overdue"] = record.next_run_at is not None and record.next_run_at < late
    flow["throughput"] = None
    if record.last_run_id is not None:
        try:
            last = store.get_run(record.last_run_id)
        except RunNotFound:  # deleted in between: show the flow without it
            return flow
        if last.duration_s:
            flow["throughput"] = last.read / last.duration_s
        flow["last_read"] = last.read
        flow["last_failed_note"] = failed_note(last.failed, record.spec.on_error)
    return flow


def _noted(store: FlowStore, runs: list[dict[str, Any]],
           flow: FlowRecord | None = None) -> list[dict[str, Any]]:
    """Run views with ``failed_note``: what became of their failed messages ("3
    dead-lettered"), by their flow's ``on_error`` (each flow read once)."""
    policies: dict[str, str | None] = {} if flow is None else {flow.name: flow.spec.on_error}
    for run in runs:
        if run["failed"] and run["flow"] not in policies:
            try:
                policies[run["flow"]] = store.get_flow(run["flow"]).spec.on_error
            except FlowNotFound:
                policies[run["flow"]] = None
        run["failed_note"] = failed_note(run["failed"], policies.get(run["flow"]))
    return runs


@router.get("/runs", name="page_runs", response_class=HTMLResponse)
def runs_page(
    request: Request, offset: PageOffset = 0,
    status: Annotated[Literal["pending", "running", "succeeded", "failed", "cancelled"]
                      | None, Query()] = None,
) -> Response:
    """Runs of every flow, newest first (failures first when filtered on them)."""
    settings = request.app.state.settings
    store = _store(request)
    page = store.list_runs(status=status, offset=offset, limit=settings.page_size)
    return render(request, "runs.html", {"runs": _noted(store, [run_view(r) for r in page.items]),
                                         "page": page, "status": status})


# -- one flow ----------------------------------------------------------------------------
@router.get("/flows/new", name="page_new_flow", response_class=HTMLResponse)
def new_flow(request: Request) -> Response:
    """The form that creates a flow."""
    return _form_page(request, FlowForm(), editing=None)


@router.post("/flows", name="page_create_flow", dependencies=[CsrfChecked])
async def create_flow(request: Request) -> Response:
    """Create a flow from the posted form; on error, show the form again with the error."""
    form = FlowForm.from_post(await request.form())
    try:
        record = await run_in_threadpool(_store(request).create_flow, form.to_spec())
    except (FormError, ConfigurationError) as exc:
        return _form_error(request, form, exc, editing=None)
    return _back(request, "page_flow", "created", name=record.name)


@router.get("/flows/{name}", name="page_flow", response_class=HTMLResponse)
def flow_page(request: Request, name: FlowName, offset: PageOffset = 0) -> Response:
    """A flow: configuration, cursor, statistics, run history with its chart."""
    store = _store(request)
    settings = request.app.state.settings
    record = store.get_flow(name)
    runs = store.list_runs(flow=name, offset=offset, limit=settings.page_size)
    chart_n = settings.history_chart_runs
    chart_runs = (runs.items[:chart_n] if offset == 0 and len(runs.items) >= min(chart_n,
                  runs.total) else store.list_runs(flow=name, limit=chart_n).items)
    dead = store.list_dead_letters(name, limit=1)
    running = record.running_run_id is not None
    chart = [run_view(r) for r in chart_runs]
    return render(request, "flow.html", {
        "flow": flow_view(record), "page": runs,
        "runs": _noted(store, [run_view(r) for r in runs.items], record),
        "stats": recent_stats(chart), "chart": run_history_svg(chart),
        "dead_letters": dead.total, "refresh": running,
    })


def recent_stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the finished runs among ``runs`` (those the chart shows), computed here
    from rows already read: the page costs the same however long the history is."""
    done = [r for r in runs if r["ended_at"]]
    durations = [r["duration_s"] for r in done if r["duration_s"] is not None]
    return {
        "runs": len(done),
        "succeeded": sum(r["status"] == "succeeded" for r in done),
        "failed": sum(r["status"] == "failed" for r in done),
        "read": sum(r["read"] for r in done), "written": sum(r["written"] for r in done),
        "failed_records": sum(r["failed"] for r in done),
        "avg_duration_s": sum(durations) / len(durations) if durations else None,
        "max_duration_s": max(durations, default=None),
    }


@router.get("/flows/{name}/edit", name="page_edit_flow", response_class=HTMLResponse)
def edit_flow(request: Request, name: FlowName) -> Response:
    """The form that edits a flow (secrets shown masked)."""
    flow = flow_view(_store(request).get_flow(name))
    return _form_page(request, FlowForm.from_flow(flow), editing=flow)


@router.post("/flows/{name}/edit", name="page_update_flow", dependencies=[CsrfChecked])
async def update_flow(request: Request, name: FlowName) -> Response:
    """Save the edit form; masked secrets left as they were keep their stored values."""
    store = _store(request)
    current = await run_in_threadpool(store.get_flow, name)
    form = FlowForm.from_post(await request.form())
    form.name = name
    try:
        changes = form.to_spec(with_name=False)
        if "sink" in changes:  # the stored spec has a list: compare like with like
            changes["sinks"] = [changes.pop("sink")]
        changes = unmask(changes, current.spec.to_dict())
        changes.setdefault("dead_letter_sink", None)
        changes.setdefault("batch_size", None)
        await run_in_threadpool(store.update_flow, name, changes)
    except (FormError, ConfigurationError) as exc:
        return _form_error(request, form, exc, editing=flow_view(current))
    return _back(request, "page_flow", "updated", name=name)


def _form_page(request: Request, form: FlowForm, editing: dict[str, Any] | None,
               status_code: int = 200, error: str | None = None) -> HTMLResponse:
    return render(request, "flow_form.html", {
        "form": form, "editing": editing, "error": error,
        "sources": available_connectors("source"), "sinks": available_connectors("sink"),
        "runtimes": available_runtimes(), "interval_help": INTERVAL_HELP,
    }, status_code=status_code)


def _form_error(request: Request, form: FlowForm, exc: Exception,
                editing: dict[str, Any] | None) -> HTMLResponse:
    message = str(mask(str(exc)))
    if isinstance(exc, FormError):
        form.errors[exc.field] = message
    else:
        form.errors[_field_of(exc, message)] = message
    status = 409 if type(exc).__name__ == "FlowExists" else 422
    return _form_page(request, form, editing, status_code=status, error=message)


def _field_of(exc: Exception, message: str) -> str:
    """The form field a configuration error points at (``general`` when unclear)."""
    option = getattr(exc, "option", None) or ""
    if option in ("name", "batch_size", "on_error"):
        return option
    for role in ("dead_letter", "source", "sink", "runtime"):
        if role in message.split(":")[1 if ":" in message else 0]:
            return f"{role}_type" if option == "type" else f"{role}_config"
    return "general"


# -- actions ------------------------------------------------------------------------------
@router.post("/flows/{name}/trigger", name="page_trigger", dependencies=[CsrfChecked])
async def trigger(request: Request, name: FlowName) -> Response:
    """Run the flow at the next heartbeat."""
    await run_in_threadpool(_store(request).trigger, name)
    return _back(request, "page_flow", "triggered", name=name)


@router.post("/flows/{name}/pause", name="page_pause", dependencies=[CsrfChecked])
async def pause(request: Request, name: FlowName) -> Response:
    """Stop scheduling the flow."""
    await run_in_threadpool(_store(request).pause, name)
    return _back(request, "page_flow", "paused", name=name)


@router.post("/flows/{name}/resume", name="page_resume", dependencies=[CsrfChecked])
async def resume(request: Request, name: FlowName) -> Response:
    """Schedule the flow again."""
    await run_in_threadpool(_store(request).resume, name)
    return _back(request, "page_flow", "resumed", name=name)


@router.post("/flows/{name}/cursor", name="page_reset_cursor", dependencies=[CsrfChecked])
async def reset_cursor(request: Request, name: FlowName) -> Response:
    """Set the flow's cursor (empty: start from the beginning)."""
    import json

    text = str((await request.form()).get("cursor") or "").strip()
    try:
        cursor = json.loads(text) if text else None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"cursor: not valid JSON: {exc.msg}", option="cursor") from None
    await run_in_threadpool(_store(request).reset_cursor, name, cursor)
    return _back(request, "page_flow", "cursor", name=name)


@router.post("/flows/{name}/delete", name="page_delete", dependencies=[CsrfChecked])
async def delete(request: Request, name: FlowName) -> Response:
    """Delete the flow, its runs and dead letters."""
    await run_in_threadpool(_store(request).delete_flow, name)
    url = request.url_for("page_dashboard").include_query_params(notice="deleted")
    return RedirectResponse(str(url), status_code=303)


@router.post("/flows/{name}/dead-letters/replay", name="page_replay",
             dependencies=[CsrfChecked])
async def replay(request: Request, name: FlowName) -> Response:
    """Replay every unreplayed dead letter of the flow."""
    report = await run_in_threadpool(deadletters.replay, _store(request), name, None)
    url = request.url_for("page_dead_letters", name=name).include_query_params(
        notice="replayed", replayed=report.replayed_count, failed=report.failed_count)
    return RedirectResponse(str(url), status_code=303)


# -- runs and dead letters ---------------------------------------------------------------
@router.get("/runs/{run_id}", name="page_run", response_class=HTMLResponse)
def run_page(request: Request, run_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    """A run: counts, timings, cursor range, error and traceback (and partitions, when the
    store records them)."""
    store = _store(request)
    [run] = _noted(store, [run_view(store.get_run(run_id))])
    # A partitioned run (Celery runtime) has parts, when the store records them.
    parts = [partition_view(p) for p in store.list_partitions(run_id)]
    return render(request, "run.html", {"run": run, "partitions": parts,
                                        "refresh": run["status"] in ("pending", "running")})


@router.get("/flows/{name}/dead-letters", name="page_dead_letters",
            response_class=HTMLResponse)
def dead_letters_page(request: Request, name: FlowName, offset: PageOffset = 0) -> Response:
    """The flow's dead letters, newest first, with a replay button."""
    store = _store(request)
    flow = flow_view(store.get_flow(name))
    page = store.list_dead_letters(name, offset=offset,
                                   limit=request.app.state.settings.page_size)
    return render(request, "dead_letters.html", {
        "flow": flow, "letters": [dead_letter_view(d) for d in page.items], "page": page})
