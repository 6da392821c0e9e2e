"""A small JSON API for the HTTP connectors' tests (and bench/connectors_http.py), served by
uvicorn on loopback: every pagination style, an incremental endpoint, authentication, a
receiver of batches (JSON arrays and JSON-RPC) that deduplicates by Idempotency-Key and
refuses records marked bad, and injectable faults (the next N requests answer 429/5xx)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "api-token"


@dataclass
class State:
    """What the API serves and saw."""

    items: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    seen: list[tuple[float, str]] = field(default_factory=list)  # (time, path)
    received: dict[str, list[Any]] = field(default_factory=dict)  # key -> records
    posts: list[str | None] = field(default_factory=list)  # idempotency keys, as received
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self) -> Response | None:
        with self.lock:
            if self.fail_next <= 0:
                return None
            self.fail_next -= 1
        headers = {"Retry-After": self.retry_after} if self.retry_after else None
        return JSONResponse({"error": "try later"}, status_code=self.fail_status,
                            headers=headers)

    def stored(self) -> list[Any]:
        with self.lock:
            return [r for records in self.received.values() for r in records]


def make_app(state: State) -> Starlette:
    def page_of(request: Request) -> tuple[int, int]:
        return int(request.query_params.get("offset", 0)), int(
            request.query_params.get("limit", 10))

    async def guard(request: Request) -> Response | None:
        state.seen.append((time.monotonic(), request.url.path))
        return state.fault()

    async def pages(request: Request) -> Response:
        if (fault := await guard(request)) is not None:
            return fault
        size = int(request.query_params.get("page_size", 10))
        page = int(request.query_params.get("page", 1))
        return JSONResponse({"data": {"items": state.items[(page - 1) * size:page * size]}})

    async def offsets(request: Request) -> Response:
        if (fault := await guard(request)) is not None:
            return fault
        offset, limit = page_of(request)
        return JSONResponse(state.items[offset:offset + limit])

    async def cursors(request: Request) -> Response:
        if (fault := await guard(request)) is not None:
            return fault
        start = int(request.query_params.get("cursor") or 0)
        chunk = state.items[start:start + 10]
        more = start + 10 < len(state.items)
        return JSONResponse({"items": chunk, "next_cursor": str(start + 10) if more else None})

    async def next_links(request: Request) -> Response:
        if (fault := await guard(request)) is not None:
            return fault
        start = int(request.query_params.get("after", 0))
        more = start + 10 < len(state.items)
        return JSONResponse({"results": state.items[start:start + 10],
                             "next": f"/next?after={start + 10}" if more else None})

    async def linked(request: Request) -> Response:
        if (fault := await guard(request)) is not None:
            return fault
        start = int(request.query_params.get("from", 0))
        headers = {}
        if start + 10 < len(state.items):
            headers["Link"] = (f'<{request.url_for("linked").include_query_params(from_=0)}>; '
                               'rel="first", '
                               f'</linked?from={start + 10}>; rel="next"')
        return JSONResponse(state.items[start:start + 10], headers=headers)

    async def since(request: Request) -> Response:
        if (fault := await guard(request)) is not None:
            return fault
        after = request.query_params.get("updated_since")
        rows = sorted((r for r in state.items if after is None or r["updated_at"] > after),
                      key=lambda r: r["updated_at"])
        return JSONResponse(rows)

    async def secure(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        basic = "Basic " + base64.b64encode(b"ann:secret").decode()
        if header not in (f"Bearer {TOKEN}", basic) and request.headers.get(
                "x-api-key") != TOKEN:
            return JSONResponse({"error": "who are you"}, status_code=401)
        return JSONResponse(state.items[:3])

    async def ingest(request: Request) -> Response:
        if (fault := await guard(request)) is not None:
            return fault
        key = request.headers.get("idempotency-key")
        body = await request.json()
        rpc = request.url.path == "/rpc"
        records = [c["params"] for c in body] if rpc else body
        with state.lock:
            state.posts.append(key)
            good = [r for r in records if not r.get("bad")]
            state.received[key or f"anon-{len(state.posts)}"] = good
        if rpc:
            return JSONResponse([
                {"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32602,
                                                            "message": "bad record"}}
                if c["params"].get("bad") else {"jsonrpc": "2.0", "id": c["id"], "result": 1}
                for c in body])
        errors = [{"index": i, "error": "bad record"} for i, r in enumerate(records)
                  if r.get("bad")]
        return JSONResponse({"accepted": len(good), "errors": errors})

    return Starlette(routes=[
        Route("/pages", pages), Route("/offsets", offsets), Route("/cursors", cursors),
        Route("/next", next_links), Route("/linked", linked, name="linked"),
        Route("/since", since), Route("/secure", secure),
        Route("/ingest", ingest, methods=["POST"]), Route("/rpc", ingest, methods=["POST"]),
    ])


@contextmanager
def served(state: State) -> Iterator[str]:
    """Serve the API with uvicorn on a free loopback port, in a thread; yield its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(state), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
