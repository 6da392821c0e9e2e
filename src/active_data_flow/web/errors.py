"""Request ids, and error responses chosen by exception class.

Every response carries an ``X-Request-ID`` header (the caller's, when it sends a sane one).
Errors become JSON for the API (``{"error": ..., "request_id": ...}``, plus ``option`` when
a configuration error names one) and an HTML page for the browser pages. A 5xx body says
only that something failed and gives the request id; the traceback goes to the log, with
secrets masked, under the same id.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI, HTTPException, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from active_data_flow.errors import ActiveDataFlowError, ConfigurationError, FlowRunError
from active_data_flow.masking import mask_text
from active_data_flow.runtimes.heartbeat.store import (
    FlowBusy,
    FlowCodeError,
    FlowExists,
    FlowNotFound,
    RunNotFound,
    StoreNotMigrated,
    StoreUnavailable,
)

__all__ = [
    "ErrorGuard",
    "RequestIdMiddleware",
    "current_request_id",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

_request_id: ContextVar[str] = ContextVar("adf_request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

GENERIC_5XX = "internal server error"


def current_request_id() -> str:
    """The id of the request being handled (``"-"`` outside a request)."""
    return _request_id.get()


class RequestIdMiddleware:
    """Give each request an id (``scope["state"]["request_id"]``) and echo it in a header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"]
                      if k == b"x-request-id"), "")
        request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Each request runs in a context of its own (a task), so the value is not reset:
        # servers like a2wsgi may finish the coroutine in another context.
        _request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


# Exception class -> HTTP status. Lookups follow the exception's MRO, so the most specific
# registered class wins (FlowNotFound is also a ConfigurationError).
STATUS_BY_CLASS: dict[type[BaseException], int] = {
    FlowNotFound: 404,
    RunNotFound: 404,
    FlowExists: 409,
    FlowBusy: 409,
    FlowCodeError: 409,
    ConfigurationError: 422,
    StoreUnavailable: 503,
    StoreNotMigrated: 503,
    FlowRunError: 500,
    ActiveDataFlowError: 500,
}

#: Statuses whose message is safe to show: the caller's own mistake, explained.
_EXPLAINED = range(400, 500)


def _wants_json(request: Request) -> bool:
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return not _is_page(path, request.headers.get("accept", ""))


def _is_page(path: str, accept: str) -> bool:
    api = path.startswith(("/api", "/heartbeat", "/health", "/metrics", "/openapi.json",
                           "/inbox/"))
    return not api and ("text/html" in accept or "*/*" in accept or not accept)


def error_response(
    request: Request, status: int, message: str, *, option: str | None = None,
    details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
) -> Response:
    """The error response for ``request``: JSON for the API, an HTML page for pages."""
    request_id = getattr(request.state, "request_id", current_request_id())
    if _wants_json(request):
        body: dict[str, Any] = {"error": message, "request_id": request_id}
        if option is not None:
            body["option"] = option
        if details:
            body["details"] = details
        return JSONResponse(body, status_code=status, headers=headers)
    templates = getattr(request.app.state, "templates", None)
    if templates is None:  # outside the engine app (should not happen): plain text
        return HTMLResponse(f"{status}: {message}", status_code=status, headers=headers)
    return templates.TemplateResponse(  # type: ignore[no-any-return]
        request, "error.html",
        {"status": status, "message": message, "request_id": request_id,
         "settings": request.app.state.settings, "user": None, "notice": None},
        status_code=status, headers=headers,
    )


def _handle_store_error(request: Request, exc: Exception) -> Response:
    status = next((code for cls in type(exc).__mro__ if (code := STATUS_BY_CLASS.get(cls))),
                  500)
    if status in _EXPLAINED:
        option = getattr(exc, "option", None)
        return error_response(request, status, mask_text(str(exc)), option=option)
    if status == 503:
        log.warning("request %s: %s: %s", current_request_id(), type(exc).__name__,
                    mask_text(str(exc)), extra={"action": "store_unavailable"})
        message = ("the flow store's schema is out of date: run `adf db upgrade`"
                   if isinstance(exc, StoreNotMigrated) else "the flow store is unavailable")
        return error_response(request, 503, message, headers={"Retry-After": "5"})
    return _handle_unexpected(request, exc)


def _handle_unexpected(request: Request, exc: Exception) -> Response:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log.error("request %s %s %s failed:\n%s", current_request_id(), request.method,
              request.url.path, mask_text(text), extra={"action": "request_failed"})
    return error_response(request, 500, GENERIC_5XX)


def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code >= 500:
        message = GENERIC_5XX
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        # Routes are registered per method; the router's own Allow names only the first.
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    return error_response(request, exc.status_code, message, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app accepts for the request's path."""
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    methods: set[str] = set()
    for route in routing.iter_route_contexts(request.app.routes):
        regex, _, _ = compile_path(route.path or "/")
        if regex.match(path):
            methods |= set(route.methods or ())
    return sorted(methods)


def _handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # The input is left out: it may be large, and it may hold a secret.
    details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                "type": str(e.get("type", ""))} for e in exc.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(request, 422, f"invalid request: {message}",
                          option=where or None, details=details)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers, keyed on exception class."""
    handlers: dict[type[Exception], Callable[[Request, Exception], Response]] = {
        StarletteHTTPException: _handle_http,
        HTTPException: _handle_http,
        RequestValidationError: _handle_validation,
        ActiveDataFlowError: _handle_store_error,
    }
    for cls, handler in handlers.items():
        app.add_exception_handler(cls, handler)


class ErrorGuard:
    """ASGI middleware turning any unexpected exception into the generic 500 response.

    It sits inside Starlette's own error middleware, so the exception is logged here once,
    masked, and never reaches the server's default handler (which would log it unmasked).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request = Request(scope, receive)
            response = _handle_unexpected(request, exc)
            if not started:
                await response(scope, receive, send)
