"""``create_app()``: the engine as a plain ASGI application a host mounts or serves."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from active_data_flow.errors import ConfigurationError
from active_data_flow.registry import available_connectors, available_runtimes
from active_data_flow.runtimes.heartbeat.store import FlowStore, Store
from active_data_flow.web import inbox, metrics, ops, pages
from active_data_flow.web.api import flows as flows_api
from active_data_flow.web.api import runs as runs_api
from active_data_flow.web.api.deps import no_unknown_query
from active_data_flow.web.errors import ErrorGuard, RequestIdMiddleware, install_error_handlers
from active_data_flow.web.guards import AuthGate, BodyGuard, LoginThrottle
from active_data_flow.web.security import AuthHook, Csrf, OriginGuard
from active_data_flow.web.settings import WebSettings
from active_data_flow.web.templating import make_templates

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    store: Store | str | None = None,
    *,
    auth: AuthHook | None = None,
    insecure_no_auth: bool = False,
    settings: WebSettings | None = None,
    heartbeat_token: str | None = None,
) -> FastAPI:
    """Build the engine: JSON API, HTML pages, heartbeat, health and metrics.

    Mount it in a host application (``host.mount("/active_data_flow", create_app(...))``)
    or serve it alone (``adf serve``).

    Args:
        store: a flow store (the host keeps owning it), or a database URL (the app
            opens the store and closes it on shutdown). ``None``: ``ADF_DATABASE_URL`` or
            the default SQLite file.
        auth: the authentication hook, a FastAPI dependency returning the caller's identity
            or raising ``HTTPException(401/403)`` (see :func:`~.security.basic_auth`). Every
            route but ``/health`` and ``/heartbeat`` (which takes its own token) requires it.
        insecure_no_auth: serve without authentication. Only for a trusted network or a
            host that authenticates in front of the engine; a warning is logged.
        settings: the engine's settings (default: ``WebSettings()``).
        heartbeat_token: shortcut for ``settings.heartbeat_token``.

    Raises:
        ConfigurationError: no ``auth`` and no ``insecure_no_auth``, or both.
    """
    if auth is None and not insecure_no_auth:
        raise ConfigurationError(
            "create_app() needs auth=<a FastAPI dependency that authenticates the caller> "
            "(e.g. active_data_flow.web.basic_auth(user, password)), or "
            "insecure_no_auth=True to serve the engine to anyone who can reach it",
            option="auth",
        )
    if auth is not None and insecure_no_auth:
        raise ConfigurationError("pass auth= or insecure_no_auth=True, not both", option="auth")
    settings = settings or WebSettings()
    if heartbeat_token is not None:
        from dataclasses import replace

        settings = replace(settings, heartbeat_token=heartbeat_token)
    owns_store = not isinstance(store, Store)
    the_store = store if isinstance(store, Store) else FlowStore(store)
    if insecure_no_auth:
        log.warning("the ActiveDataFlow engine serves WITHOUT authentication: anyone who can "
                    "reach it can create, run and delete flows",
                    extra={"action": "insecure_no_auth"})

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if app.state.background is not None:
            app.state.background.shutdown()  # runs stop at a checkpoint, or are released
        if owns_store:
            the_store.close()

    app = FastAPI(title=settings.title, version=_version(), lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  description="Manage and monitor ActiveDataFlow flows.")
    app.state.store = the_store
    app.state.background = None  # the threads of runs POST /heartbeat claims (ops.py)
    app.state.background_lock = threading.Lock()
    app.state.settings = settings
    app.state.csrf = Csrf(settings.secret_key, settings.csrf_max_age_s)
    app.state.templates = make_templates()
    app.state.metrics_registry = metrics.metrics_registry(the_store)
    install_error_handlers(app)
    # /health/ is not /health: a redirect would name whatever Host the caller sent.
    app.router.redirect_slashes = False

    app.include_router(ops.health_router)
    app.include_router(ops.heartbeat_router)
    app.include_router(inbox.router)  # takes the flow's own token
    protected = APIRouter(dependencies=[Depends(_authenticated)])
    api = APIRouter(prefix="/api", dependencies=[Depends(no_unknown_query)])
    api.include_router(flows_api.router)
    api.include_router(runs_api.router)
    protected.include_router(api)
    protected.include_router(metrics.router)
    protected.include_router(pages.router)
    protected.include_router(ops.assets_router)
    protected.add_api_route("/openapi.json", _openapi_route(app, auth),
                            include_in_schema=False, methods=["GET"])
    app.include_router(protected)

    # Added last = outermost: request id, allowed hosts, origin check, headers, the error
    # guard, then authentication (before any body is read) and the body's checks.
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes,
                       max_depth=settings.max_json_depth)
    app.add_middleware(AuthGate, hook=auth or _anonymous,
                       throttle=LoginThrottle(settings.login_failures, settings.login_window_s))
    app.add_middleware(ErrorGuard)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(OriginGuard, trusted_origins=settings.trusted_origins,
                       allowed_hosts=settings.allowed_hosts)
    if settings.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(RequestIdMiddleware)
    return app


def _anonymous() -> None:
    return None


def _authenticated(request: Request) -> Any:
    """The identity :class:`~.guards.AuthGate` established (the gate runs before any
    route; this refuses a request that reached a protected route without it)."""
    state = request.scope.get("state") or {}
    if not state.get("authenticated"):
        raise HTTPException(401, "authentication required")
    return state.get("user")


def _version() -> str:
    from active_data_flow import __version__

    return __version__


def _openapi_route(app: FastAPI, auth: AuthHook | None) -> Callable[[], dict[str, Any]]:
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(build_openapi(app, auth))
        return cache

    return openapi


def build_openapi(app: FastAPI, auth: AuthHook | None) -> dict[str, Any]:
    """The OpenAPI document, with the registered type names as enums and the security
    schemes the engine enforces."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    schemas = doc.get("components", {}).get("schemas", {})
    for model, names in (("SourceSpec", available_connectors("source")),
                         ("SinkSpec", available_connectors("sink")),
                         ("RuntimeSpec", available_runtimes())):
        if model in schemas and names:
            schemas[model]["properties"]["type"]["enum"] = names
    security = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    security["heartbeatToken"] = {"type": "http", "scheme": "bearer",
                                  "description": "ADF_HEARTBEAT_TOKEN"}
    security["inboxToken"] = {"type": "http", "scheme": "bearer",
                              "description": "the flow's inbox token (adf inbox-token)"}
    security["heartbeatTokenHeader"] = {
        "type": "apiKey", "in": "header", "name": "X-ADF-Heartbeat-Token",
        "description": "ADF_HEARTBEAT_TOKEN, for callers that cannot send a Bearer header"}
    scheme = getattr(auth, "openapi_scheme", None)
    if isinstance(scheme, dict):
        security["engineAuth"] = scheme
        for path, operations in doc.get("paths", {}).items():
            for operation in operations.values():
                if path not in ("/health", "/heartbeat") and not path.startswith("/inbox/"):
                    operation.setdefault("security", [{"engineAuth": []}])
    return doc


class SecurityHeaders:
    """Headers that keep pages from being framed, sniffed or loading foreign code, and
    responses from being cached (``Cache-Control: no-store`` unless a route says
    otherwise, as the static files do)."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"content-security-policy",
         b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
         b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.HEADERS if k not in present]
                if b"cache-control" not in present:  # API answers and pages hold live data
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
