"""Shared pieces of the API routes: the store, query parameters, documented errors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError

from active_data_flow.flow import FLOW_NAME_PATTERN
from active_data_flow.runtimes.heartbeat.store import Store as AnyStore
from active_data_flow.web.api.schemas import ErrorOut
from active_data_flow.web.settings import WebSettings

__all__ = [
    "FlowNamePath",
    "Limit",
    "Offset",
    "Store",
    "errors",
    "get_settings",
    "get_store",
    "no_unknown_query",
    "spec_dict",
]


def get_store(request: Request) -> AnyStore:
    """The app's flow store."""
    return request.app.state.store  # type: ignore[no-any-return]


def get_settings(request: Request) -> WebSettings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


Store = Annotated[AnyStore, Depends(get_store)]
FlowNamePath = Annotated[str, Path(pattern=FLOW_NAME_PATTERN, description="The flow's name.")]
Offset = Annotated[int, Query(ge=0, le=2**31, description="Matching records to skip.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]

_DESCRIPTIONS = {
    400: "Malformed request: the body is not valid JSON.",
    401: "Not authenticated.",
    403: "Refused: cross-site request or insufficient rights.",
    404: "No such flow or run.",
    409: "Conflict: the name is taken, the flow is running, or its code is not loaded.",
    413: "The request body is larger than the engine accepts.",
    415: "Wrong content type: state-changing API requests take application/json.",
    422: "Invalid request: the error names the field or option at fault.",
    429: "Too many failed logins from this client: retry after `Retry-After` seconds.",
    503: "The flow store is unavailable.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]}
            for code in (400, 401, 403, 413, 415, 429, 503, *codes)}


def no_unknown_query(request: Request) -> None:
    """Refuse query parameters the operation does not declare (a typo is not ignored) and
    parameters given twice (which one would win is anyone's guess)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError([{
            "loc": ("query", unknown[0]), "type": "extra_forbidden",
            "msg": f"unknown query parameter (known: {', '.join(sorted(known)) or 'none'})"}])
    repeated = sorted(k for k in known if len(request.query_params.getlist(k)) > 1)
    if repeated:
        raise RequestValidationError([{
            "loc": ("query", repeated[0]), "type": "repeated",
            "msg": "given more than once; give it once"}])


def spec_dict(model: Any) -> dict[str, Any]:
    """A request model as the store's spec dict: only the fields the caller set."""
    return model.model_dump(mode="json", exclude_unset=True)  # type: ignore[no-any-return]


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
