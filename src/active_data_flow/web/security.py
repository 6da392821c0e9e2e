"""Authentication, CSRF protection and secret comparison for the web engine.

* **Authentication** is a hook: any FastAPI dependency the host application provides. It
  returns who the caller is (any value; shown in the page header when it is a string) or
  raises ``HTTPException(401 or 403)``. :func:`basic_auth` is the one ``adf serve`` uses.
* **CSRF**: every HTML form carries a token that is an HMAC of a random per-browser cookie,
  so a page from another site can neither read nor forge it; posts without it get 403.
  Independently, :class:`OriginGuard` refuses any state-changing request that a browser
  marks as cross-site (``Sec-Fetch-Site``) or whose ``Origin`` is foreign; that also covers
  the JSON API against form posts from other sites.
* Secrets are compared in constant time (:func:`same_secret`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "AuthHook",
    "Csrf",
    "OriginGuard",
    "basic_auth",
    "bearer_token",
    "same_secret",
]

log = logging.getLogger(__name__)

#: A FastAPI dependency: returns the caller's identity or raises HTTPException(401/403).
AuthHook = Callable[..., Any]

CSRF_COOKIE = "adf_csrf"
CSRF_FIELD = "csrf_token"

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def same_secret(given: str | bytes | None, expected: str | bytes) -> bool:
    """Whether ``given`` equals ``expected``, in time independent of where they differ and
    of their lengths (both are hashed first)."""
    if given is None:
        return False
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(hashlib.sha256(a).digest(), hashlib.sha256(b).digest())


def basic_auth(username: str, password: str, *, realm: str = "ActiveDataFlow") -> AuthHook:
    """An authentication hook for HTTP Basic credentials (what ``adf serve`` uses).

    Browsers prompt for the credentials; API clients send ``Authorization: Basic ...``.

    Returns:
        a dependency returning the user name, or raising 401 with ``WWW-Authenticate``.
    """
    if not username or not password:
        raise ValueError("basic_auth needs a non-empty username and password")
    challenge = {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}

    def authenticate(request: Request) -> str:
        given_user, given_password = _basic_credentials(request.headers.get("authorization"))
        # Evaluate both comparisons always: no early exit on a wrong user name.
        user_ok = same_secret(given_user, username)
        password_ok = same_secret(given_password, password)
        if not (user_ok and password_ok):
            raise HTTPException(401, "authentication required", headers=challenge)
        return username

    # Lets create_app() declare the scheme in the OpenAPI document.
    authenticate.openapi_scheme = {"type": "http", "scheme": "basic"}  # type: ignore[attr-defined]
    return authenticate


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class Csrf:
    """Signed double-submit tokens for the HTML forms.

    The browser holds a random nonce in an HttpOnly, SameSite=Strict cookie; each form
    carries ``HMAC(secret, nonce)``. A forged form can carry neither: another site cannot
    read the page, and without the secret it cannot derive the token from a cookie it
    managed to plant.
    """

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"adf-csrf:" + secret.encode()).digest()

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def token(self, request: Request) -> str:
        """The form token for this browser, issuing a cookie nonce on first use."""
        nonce = getattr(request.state, "csrf_nonce", None) or request.cookies.get(CSRF_COOKIE)
        if not nonce or len(nonce) > 128:
            nonce = secrets.token_urlsafe(32)
            request.state.csrf_new_nonce = nonce
        request.state.csrf_nonce = nonce
        return self._sign(nonce)

    def valid(self, request: Request, token: str | None) -> bool:
        """Whether ``token`` (from the posted form) matches this browser's cookie."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if not nonce or not token:
            return False
        return hmac.compare_digest(self._sign(nonce), token)

    async def protect(self, request: Request) -> None:
        """Dependency of every form route: 403 unless the posted token is valid."""
        form = await request.form()
        token = form.get(CSRF_FIELD)
        if not self.valid(request, token if isinstance(token, str) else None):
            log.warning("form post without a valid CSRF token refused: %s %s",
                        request.method, request.url.path, extra={"action": "csrf_refused"})
            raise HTTPException(403, "CSRF token missing or invalid: reload the page and "
                                "submit the form again")


class OriginGuard:
    """ASGI middleware refusing cross-site state-changing requests with 403.

    A request with an unsafe method is refused when the browser says it is cross-site
    (``Sec-Fetch-Site: cross-site`` or ``same-site``) or when its ``Origin`` header names
    another origin than the request's own host (or one of ``trusted_origins``). Clients that
    are not browsers send neither header and pass; they authenticate by other means.
    """

    def __init__(self, app: ASGIApp, trusted_origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.trusted = {o.rstrip("/").lower() for o in trusted_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _UNSAFE:
            reason = self._refusal(scope)
            if reason is not None:
                await _forbidden(scope, send, reason)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site"):
            return f"cross-site request refused (Sec-Fetch-Site: {site})"
        origin = headers.get("origin")
        if origin is None:
            return None
        origin = origin.rstrip("/").lower()
        if origin in self.trusted:
            return None
        host = headers.get("host", "").lower()
        parts = urlsplit(origin)
        if origin == "null" or not parts.netloc or parts.netloc != host:
            return f"cross-origin request refused (Origin: {origin})"
        return None


async def _forbidden(scope: Scope, send: Send, reason: str) -> None:
    import json

    log.warning("%s %s: %s", scope["method"], scope.get("path"), reason,
                extra={"action": "origin_refused"})
    body = json.dumps({"error": reason}).encode()
    await send({"type": "http.response.start", "status": 403, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
