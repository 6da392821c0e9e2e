"""Schemathesis hooks (loaded with ``SCHEMATHESIS_HOOKS=tests.acceptance.web.st_hooks``): a
check that every refused request (4xx) explains itself and leaves the store's row counts
unchanged.

Counts are read through the store's public API on the database ``ADF_DATABASE_URL`` names
(the one the served engine uses), before and after each call.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

from active_data_flow.runtimes.heartbeat import FlowStore

_store: FlowStore | None = None
_before: dict[int, tuple[int, int]] = {}


def _counts() -> tuple[int, int]:
    global _store
    if _store is None:
        _store = FlowStore(os.environ["ADF_DATABASE_URL"], auto_upgrade=False)
    return _store.list_flows(limit=1).total, _store.list_runs(limit=1).total


@schemathesis.hook
def filter_query(context: Any, query: Any) -> bool:
    """Skip generated queries holding a null, an empty list or an object: the HTTP client
    leaves such a parameter out or sends it empty, so the request sent is not the (invalid)
    one generated, and a 2xx for it would be reported as "schema-violating request
    accepted"."""
    return not isinstance(query, dict) or all(_sendable(v) for v in query.values())


def _sendable(value: Any) -> bool:
    if value is None or isinstance(value, dict):
        return False
    return not (isinstance(value, list) and (not value or not all(map(_sendable, value))))


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    _before[id(case)] = _counts()


@schemathesis.check
def refusals_change_nothing(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx carries an ``error`` message and changed no row (flows, runs)."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    if not isinstance(body, dict) or not str(body.get("error", "")).strip():
        raise AssertionError(f"{response.status_code} without an error message: {body!r}")
    before = _before.get(id(case))
    after = _counts()
    if before is not None and before != after:
        raise AssertionError(f"a refused request ({response.status_code}) changed the row "
                             f"counts (flows, runs) from {before} to {after}")
    return True
