"""The web engine under the project's URLs, behind Django's own users and sessions.

In ``proj/asgi.py``::

    from django.core.asgi import get_asgi_application
    from active_data_flow.contrib.django.asgi import with_engine

    application = with_engine(get_asgi_application(), prefix="/flows")

Requests under ``/flows/`` go to the engine (pages, JSON API); every other request (the admin
included) goes to Django. The engine accepts a request when its Django session belongs to an
active **staff** user (no second password); anyone else is sent to the admin's login page
(pages) or refused (401 not logged in, 403 not staff). The engine's forms carry CSRF tokens
signed with a key derived from ``SECRET_KEY``, and cross-origin posts are refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from django.conf import settings as django_settings
from fastapi import HTTPException, Request

from active_data_flow.contrib.django import conf

__all__ = ["django_staff", "engine", "with_engine"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def django_staff(*, login_url: str | None = None) -> Callable[..., str]:
    """A FastAPI dependency: the Django user of the request's session cookie, if staff.

    (FastAPI resolves the hook's annotations at import: ``Request`` is imported at the top.)
    Raises ``HTTPException``: 303 to the login page for a page request without a session,
    401 for an API request without one, 403 for a user who is not active staff.
    """
    def authenticate(request: Request) -> str:
        from django.contrib.auth import get_user
        from django.db import close_old_connections

        engine = import_module(django_settings.SESSION_ENGINE)
        key = request.cookies.get(django_settings.SESSION_COOKIE_NAME)
        close_old_connections()
        try:
            user = get_user(SimpleNamespace(session=engine.SessionStore(key)))
            authenticated, staff = user.is_authenticated, user.is_active and user.is_staff
            name = user.get_username() if authenticated else ""
        finally:
            close_old_connections()
        if not authenticated:
            wants_page = "text/html" in request.headers.get("accept", "")
            if wants_page and request.method == "GET":
                target = login_url or django_settings.LOGIN_URL
                path = request.scope.get("root_path", "") + request.url.path.removeprefix(
                    request.scope.get("root_path", ""))
                raise HTTPException(303, headers={"Location": f"{target}?next={quote(path)}"})
            raise HTTPException(401, "log in to the Django site as a staff user")
        if not staff:
            raise HTTPException(403, f"{name} is not a staff user")
        return str(name)

    return authenticate


def engine(**options: Any) -> Any:
    """The web engine (FastAPI) on the project's flow store, authenticated by
    :func:`django_staff`; ``options`` go to ``create_app``."""
    from active_data_flow.web import create_app
    from active_data_flow.web.settings import WebSettings

    adf = conf.adf_settings()
    secret = hmac.new(str(django_settings.SECRET_KEY).encode(), b"active_data_flow.csrf",
                      hashlib.sha256).hexdigest()
    options.setdefault("settings", WebSettings(secret_key=secret,
                                               heartbeat_token=adf.heartbeat_token))
    options.setdefault("auth", django_staff())
    return create_app(conf.flow_store(), **options)


def with_engine(django_app: ASGIApp, prefix: str = "/flows", **options: Any) -> ASGIApp:
    """An ASGI application serving the engine under ``prefix`` and Django elsewhere."""
    prefix = "/" + prefix.strip("/")
    app = engine(**options)

    async def application(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await app(scope, receive, send)  # the engine starts and stops; Django has none
            return
        path = scope.get("path", "")
        if path == prefix or path.startswith(prefix + "/"):
            inner = dict(scope)
            inner["root_path"] = scope.get("root_path", "") + prefix
            if path == prefix:
                inner["path"] = prefix + "/"
            await app(inner, receive, send)
            return
        await django_app(scope, receive, send)

    return application
