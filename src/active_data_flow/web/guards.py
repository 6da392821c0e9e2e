"""The engine's outer guards, in the order a request meets them (ASGI middleware).

:class:`AuthGate`
    authenticates the caller before anything reads the request's body: an anonymous
    request costs the server its headers only, whatever it sends (a malformed or a 30 MB
    body is a 401 like any other). It also throttles failed logins per client (429 with
    ``Retry-After``).
:class:`BodyGuard`
    for authenticated state-changing requests: the body is capped (413), its content type
    must be the route's (415: JSON for the API, a form for the pages), and a JSON body
    must be plain JSON every database can store (422): bounded nesting, finite numbers,
    no NUL character.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.dependencies.utils import get_dependant, solve_dependencies
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from active_data_flow.web.errors import error_response

__all__ = ["AuthGate", "BodyGuard", "LoginThrottle", "route_path"]

log = logging.getLogger(__name__)

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths that do not take the engine's authentication (the heartbeat takes its token).
PUBLIC_PATHS = frozenset({"/health", "/heartbeat"})
#: Path prefixes likewise: a flow's inbox takes the flow's own token.
PUBLIC_PREFIXES = ("/inbox/",)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def route_path(scope: Scope) -> str:
    """The request's path inside the engine (without the mount's prefix)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


class LoginThrottle:
    """Failed logins per client: after ``failures`` within ``window_s`` seconds, the client
    is refused (429) until the oldest of them is ``window_s`` old. A success does not reset
    the count: a guesser cannot interleave the right password... it does not know it."""

    def __init__(self, failures: int, window_s: float, max_clients: int = 10_000) -> None:
        self.failures = failures
        self.window_s = window_s
        self._max_clients = max_clients
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait before trying again (0: it may try now)."""
        now = time.monotonic()
        with self._lock:
            times = self._seen.get(client)
            if times is None:
                return 0
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) < self.failures:
                return 0
            return max(1, math.ceil(times[0] + self.window_s - now))

    def failed(self, client: str) -> None:
        """Count a failed login of ``client``."""
        with self._lock:
            times = self._seen.pop(client, None) or deque(maxlen=self.failures)
            times.append(time.monotonic())
            self._seen[client] = times  # most recent last
            while len(self._seen) > self._max_clients:
                self._seen.popitem(last=False)


class AuthGate:
    """Run the authentication hook on the request's headers, before any route reads its
    body; record the identity for the routes (``request.state.user``).

    The hook is any FastAPI dependency (it may have dependencies of its own); it sees a
    request whose body cannot be read. Failed attempts that presented credentials (an
    ``Authorization`` header) count towards the client's throttle.
    """

    def __init__(self, app: ASGIApp, hook: Callable[..., Any],
                 throttle: LoginThrottle | None = None) -> None:
        self.app = app
        self.throttle = throttle

        def gate(identity: Any = Depends(hook)) -> Any:  # noqa: B008 - FastAPI's idiom
            return identity

        self._dependant = get_dependant(path="", call=gate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no receive: the hook cannot read the body
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.retry_after(client) if self.throttle else 0
        if wait:
            log.warning("too many failed logins from %s: refused for %d s", client, wait,
                        extra={"action": "login_throttled"})
            await error_response(request, 429, "too many failed logins: try again later",
                                 headers={"Retry-After": str(wait)})(scope, receive, send)
            return
        try:
            identity = await self._authenticate(request)
        except HTTPException as exc:
            if self.throttle and exc.status_code in (401, 403) and _header(
                    scope, b"authorization"):
                self.throttle.failed(client)
            message = exc.detail if isinstance(exc.detail, str) else "authentication required"
            response = error_response(request, exc.status_code, message,
                                      headers=dict(exc.headers or {}) or None)
            await response(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["user"] = identity
        state["authenticated"] = True
        await self.app(scope, receive, send)

    async def _authenticate(self, request: Request) -> Any:
        async with AsyncExitStack() as stack:
            # The exit stacks FastAPI's routing would provide (dependencies with yield).
            scope = {**request.scope, "fastapi_inner_astack": stack,
                     "fastapi_function_astack": stack}
            solved = await solve_dependencies(request=Request(scope), dependant=self._dependant,
                                              async_exit_stack=stack, embed_body_fields=False)
            if solved.errors:  # the hook asked for something the request does not have
                raise HTTPException(401, "authentication required")
            return solved.values.get("identity")


class BodyGuard:
    """Cap, type-check and vet the bodies of state-changing requests (after
    authentication: an anonymous body is never read).

    Args:
        max_bytes: the largest body accepted (a larger one is a 413, read no further).
        max_depth: how deeply a JSON body may nest.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = route_path(scope)
        refusal = self._refusal(scope, path)
        if refusal is not None:
            await error_response(request, *refusal)(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await error_response(request, 413, f"request body over {self.max_bytes} bytes")(
                scope, receive, send)
            return
        problem = self._json_problem(body) if _is_json(scope) and body.strip() else None
        if problem is not None:
            await error_response(request, 422, f"invalid request: {problem[1]}",
                                 option=problem[0])(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _refusal(self, scope: Scope, path: str) -> tuple[int, str] | None:
        length = _header(scope, b"content-length")
        if length is not None and (not length.strip().isdigit()
                                   or int(length) > self.max_bytes):
            return 413, f"request body over {self.max_bytes} bytes"
        media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        has_body = (length is not None and length.strip() != "0") or _header(
            scope, b"transfer-encoding") is not None
        if path == "/heartbeat" or not (media or has_body):
            return None
        if path.startswith(("/api/", *PUBLIC_PREFIXES)):
            if media != "application/json":
                return 415, "state-changing API requests take application/json (or no body)"
        elif media not in _FORMS:
            return 415, "forms are posted as application/x-www-form-urlencoded"
        return None

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _json_problem(self, body: bytes) -> tuple[str, str] | None:
        """``(option, why)`` when a JSON body is too deep or holds what JSON has not (NaN,
        Infinity) or no database stores (NUL); ``None`` when fine or not JSON at all
        (the route's own parser then says what is wrong)."""
        if _depth(body) > self.max_depth:
            return "body", f"JSON nested more than {self.max_depth} levels deep"
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return None
        for where, why in _unstorable(value, ()):
            return ".".join(map(str, where)) or "body", why
        return None


def _is_json(scope: Scope) -> bool:
    media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return media == "application/json"


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth(body: bytes) -> int:
    """The deepest nesting of a JSON text's arrays and objects (strings skipped)."""
    depth = deepest = 0
    for token in _TOKENS.finditer(body):
        char = token[0][:1]
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def _unstorable(value: Any, where: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield where, f"{value!r} is not a finite number (JSON has no NaN or Infinity)"
    elif isinstance(value, str) and "\x00" in value:
        yield where, "text may not hold a NUL character"
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield where, "a key may not hold a NUL character"
            yield from _unstorable(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable(item, (*where, index))


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # a disconnect, when the client goes

    return replay
