"""``POST /inbox/{flow}``: records pushed to a flow's ``http_inbox`` source.

The records are committed to the flow store before the answer (202), so a 202 means
stored; a client that got no answer retries with the same ``Idempotency-Key`` and nothing is
stored twice. The route takes the flow's own token (``Authorization: Bearer``, checked
against the source's ``token_sha256``), not the engine's login; the engine's body guard
caps the body and refuses what is not plain JSON before the route runs.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from active_data_flow.runtimes.heartbeat.engine.inbox import (
    Pushed,
    PushError,
    hash_token,
    parse_push,
)
from active_data_flow.runtimes.heartbeat.store import FlowNotFound, InboxReceipt
from active_data_flow.web.api.deps import FlowNamePath, Store, errors
from active_data_flow.web.security import bearer_token, same_secret

__all__ = ["router"]

router = APIRouter(tags=["inbox"])

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="inbox"'}


@router.post(
    "/inbox/{flow}", status_code=202, operation_id="push_to_inbox", responses=errors(422),
    openapi_extra={"security": [{"inboxToken": []}], "requestBody": {"required": True,
                   "content": {"application/json": {"schema": {}}}}},
)
async def push(flow: FlowNamePath, request: Request, store: Store) -> Response:
    """Store records for the flow's ``http_inbox`` source; answer once they are committed.

    The body is a record (a JSON object), an array of records, or a JSON-RPC 2.0 call
    ``push`` (``params: {"record": {...}, "key": "..."}``) / ``push_batch``
    (``params: {"records": [...], "key": "..."}``), or an array of calls. An
    ``Idempotency-Key`` header (or a call's ``key``) makes a retry store nothing twice.
    Answers ``{"accepted": n, "duplicates": d, "last_id": id}`` (a JSON-RPC response for
    calls); 401 without the flow's token (also for an unknown flow or one without an
    inbox); 422 naming the field a record fails the flow's schema on.
    """
    given = bearer_token(request)
    if given is None:
        raise HTTPException(401, "the flow's inbox token is required", headers=_CHALLENGE)
    try:
        record = await run_in_threadpool(store.flows.get, flow)
    except FlowNotFound:
        record = None
    source = record.spec.source if record is not None else None
    config = (source.to_dict().get("config") or {}) if source is not None else {}
    # An unknown flow, a flow without an inbox and a wrong token answer alike: the inbox
    # tells nothing about the engine's flows to a caller without their token.
    if (source is None or source.type != "http_inbox"
            or not same_secret(hash_token(given), str(config.get("token_sha256")))):
        raise HTTPException(401, "no inbox of that name takes this token", headers=_CHALLENGE)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _refuse(None, PushError("the body is not valid JSON", status=400,
                                       rpc_code=-32700))
    request_key = request.headers.get("idempotency-key")
    try:
        pushed = parse_push(body, config, request_key)
    except PushError as exc:
        return _refuse(body, exc)
    receipt = await run_in_threadpool(store.inbox.push, flow, pushed.entries)
    return _accepted(pushed, receipt)


def _accepted(pushed: Pushed, receipt: InboxReceipt) -> Response:
    totals = receipt.to_dict()
    if pushed.rpc is None:
        return JSONResponse(totals, status_code=202)
    if pushed.rpc == "single":
        call_id = pushed.calls[0][0]
        return JSONResponse({"jsonrpc": "2.0", "id": call_id, "result": totals},
                            status_code=202)
    answers = [{"jsonrpc": "2.0", "id": call_id, "result": {"records": count}}
               for call_id, count in pushed.calls if call_id is not None]
    return JSONResponse(answers, status_code=202)


def _refuse(body: Any, exc: PushError) -> Response:
    calls = body if isinstance(body, list) else [body]
    if any(isinstance(c, dict) and c.get("jsonrpc") == "2.0" for c in calls):
        call_id = body.get("id") if isinstance(body, dict) else None
        return JSONResponse({"jsonrpc": "2.0", "id": call_id, "error": {
            "code": exc.rpc_code, "message": str(exc), "data": {"field": exc.field}}},
            status_code=exc.status)
    return JSONResponse({"error": str(exc), "option": exc.field}, status_code=exc.status)
