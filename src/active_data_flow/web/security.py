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
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "MIN_PASSWORD_LENGTH",
    "AuthHook",
    "Csrf",
    "OriginGuard",
    "basic_auth",
    "bearer_token",
    "host_allowed",
    "origin_key",
    "same_secret",
]

log = logging.getLogger(__name__)

#: A FastAPI dependency: returns the caller's identity or raises HTTPException(401/403).
AuthHook = Callable[..., Any]

CSRF_COOKIE = "adf_csrf"
CSRF_FIELD = "csrf_token"

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The shortest password :func:`basic_auth` accepts.
MIN_PASSWORD_LENGTH = 12


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

    Raises:
        ValueError: no user name, or a password shorter than :data:`MIN_PASSWORD_LENGTH`.
    """
    if not username or not password:
        raise ValueError("basic_auth needs a non-empty username and password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters "
                         "(a passphrase of a few words is good)")
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
    """Signed double-submit tokens for the HTML forms, bound to the user, that expire.

    The browser holds a random nonce in an HttpOnly, SameSite=Strict cookie; each form
    carries ``<issued at><HMAC(secret, nonce, user, issued at)>`` (hexadecimal). A forged
    form can carry neither: another site cannot read the page, and without the secret it
    cannot derive the token from a cookie it managed to plant. A token is valid for
    ``max_age_s`` seconds, for the user it was issued to only.
    """

    def __init__(self, secret: str, max_age_s: float = 12 * 3600.0) -> None:
        self._key = hashlib.sha256(b"adf-csrf:" + secret.encode()).digest()
        self.max_age_s = max_age_s

    def _sign(self, nonce: str, user: str, issued: str) -> str:
        message = "\x00".join((nonce, user, issued)).encode()
        return issued + hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def token(self, request: Request) -> str:
        """The form token for this browser and user, issuing a cookie nonce on first use."""
        nonce = getattr(request.state, "csrf_nonce", None) or request.cookies.get(CSRF_COOKIE)
        if not nonce or len(nonce) > 128 or not nonce.isascii():
            nonce = secrets.token_urlsafe(32)
            request.state.csrf_new_nonce = nonce
        request.state.csrf_nonce = nonce
        return self._sign(nonce, _user_of(request), f"{int(time.time()):010x}")

    def valid(self, request: Request, token: str | None) -> bool:
        """Whether ``token`` (from the posted form) matches this browser's cookie and user
        and has not expired."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if not nonce or not token or not token.isascii() or len(token) != 74:
            return False
        issued = token[:10]
        try:
            age = time.time() - int(issued, 16)
        except ValueError:
            return False
        if not -60 <= age <= self.max_age_s:
            return False
        expected = self._sign(nonce, _user_of(request), issued)
        return hmac.compare_digest(expected.encode(), token.encode())

    async def protect(self, request: Request) -> None:
        """Dependency of every form route: 403 unless the posted token is valid."""
        form = await request.form()
        token = form.get(CSRF_FIELD)
        if not self.valid(request, token if isinstance(token, str) else None):
            log.warning("form post without a valid CSRF token refused: %s %s",
                        request.method, request.url.path, extra={"action": "csrf_refused"})
            raise HTTPException(403, "CSRF token missing, expired or invalid: reload the page "
                                "and submit the form again")


def _user_of(request: Request) -> str:
    user = getattr(request.state, "user", None)
    return "" if user is None else user if isinstance(user, str) else repr(user)


class OriginGuard:
    """ASGI middleware refusing cross-site state-changing requests with 403.

    A request with an unsafe method is refused when the browser says it is cross-site
    (``Sec-Fetch-Site: cross-site`` or ``same-site``) or when its ``Origin`` is not the
    engine's own: scheme, host and port must equal the request's (its scheme and ``Host``),
    with that host among ``allowed_hosts`` when some are configured (so a DNS-rebinding
    pair, ``Host: rebind.attacker.example`` with the matching ``Origin``, is refused), or
    it must be one of ``trusted_origins``. Clients that are not browsers send neither
    header and pass; they authenticate by other means.
    """

    def __init__(self, app: ASGIApp, trusted_origins: tuple[str, ...] = (),
                 allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.trusted = {o for o in map(origin_key, trusted_origins) if o is not None}
        self.allowed_hosts = allowed_hosts

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
        key = origin_key(origin)
        if key is not None and key in self.trusted:
            return None
        scheme = str(scope.get("scheme", "http"))
        own = origin_key(f"{scheme}://{headers.get('host', '')}")
        if key is None or key != own:
            return f"cross-origin request refused (Origin: {origin})"
        if self.allowed_hosts and not host_allowed(key[1], self.allowed_hosts):
            return f"request for a host this engine does not serve refused (Origin: {origin})"
        return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin or URL (default ports filled in), or ``None``
    for ``null``, a malformed one, or a scheme other than http(s)."""
    try:
        parts = urlsplit(origin.strip().rstrip("/").lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` matches one of ``patterns`` (``*``, ``*.example.com``, a name)."""
    host = host.lower()
    for pattern in (p.lower() for p in patterns):
        if pattern == "*" or host == pattern or (
                pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


async def _forbidden(scope: Scope, send: Send, reason: str) -> None:
    import json

    log.warning("%s %s: %s", scope["method"], scope.get("path"), reason,
                extra={"action": "origin_refused"})
    body = json.dumps({"error": reason}).encode()
    await send({"type": "http.response.start", "status": 403, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
