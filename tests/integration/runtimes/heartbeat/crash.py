"""Named crash points, injected from test code into a worker process (never in production).

``install("after_sink_commit", 5)`` makes the calling process kill itself (SIGKILL: no
clean-up, no rollback sent) the 5th time it reaches that point of a run. The points are
recognised by the SQL statements that mark them, seen through SQLAlchemy events on the
``Engine`` class (every engine of the process: the store's and the sinks'):

``after_claim``
    the claim (``UPDATE adf_runs SET status='running', claim_token=<new token> ...``) is
    committed: the process dies right after that commit.
``mid_batch``
    a sink writing to the store's own database has written its batch and is about to write
    the cursor in the same transaction (the checkpoint's ``UPDATE adf_runs SET cursor_end``
    on a connection that wrote rows first): nothing of the batch is committed.
``after_sink_commit``
    a sink elsewhere has committed its batch; the checkpoint's ``UPDATE adf_runs SET
    cursor_end`` (in the store's own transaction) is about to run: batch durable, cursor not.
``after_cursor_commit``
    the transaction holding a checkpoint's cursor is committed: the process dies right
    after that commit (the sink's transaction, or the store's).
``while_finishing``
    the run's final status is written, not committed: just before the finishing
    transaction's ``UPDATE adf_flows SET last_run_id ...``.

A point "after a commit" performs that commit on the DBAPI connection itself, then dies:
SQLAlchemy's ``commit`` event fires before the commit is sent.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

__all__ = ["CRASH_POINTS", "install"]

CRASH_POINTS = ("after_claim", "mid_batch", "after_sink_commit", "after_cursor_commit",
                "while_finishing")

# Flags on a connection's transaction (in ``conn.info``, cleared when it ends).
_WROTE_ROWS = "adf_test_wrote_rows"  # the transaction inserted rows outside the store
_CLAIMED = "adf_test_claimed"  # the transaction claimed runs
_CHECKPOINTED = "adf_test_checkpointed"  # the transaction wrote a run's cursor
_FLAGS = (_WROTE_ROWS, _CLAIMED, _CHECKPOINTED)


def install(point: str, nth: int = 1) -> None:
    """Kill this process with SIGKILL the ``nth`` time it reaches ``point``."""
    if point not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r} (one of {', '.join(CRASH_POINTS)})")
    hits = 0
    lock = threading.Lock()

    def reached(name: str) -> bool:
        nonlocal hits
        if name != point:
            return False
        with lock:
            hits += 1
            return hits == nth

    def before_execute(conn: Connection, _cursor: Any, _statement: str, _params: Any,
                       context: Any, _many: bool) -> None:
        table, values = _written(context)
        if table is None:
            return
        if context.isinsert and not table.startswith("adf_"):
            conn.info[_WROTE_ROWS] = True
        elif table == "adf_runs" and values.get("claim_token") is not None:
            conn.info[_CLAIMED] = True  # a claim: status running under a fresh token
        elif table == "adf_runs" and "cursor_end" in values:
            conn.info[_CHECKPOINTED] = True
            if reached("mid_batch" if conn.info.get(_WROTE_ROWS) else "after_sink_commit"):
                _die()
        elif table == "adf_flows" and "last_run_id" in values and reached("while_finishing"):
            _die()

    def before_commit(conn: Connection) -> None:
        claimed, checkpointed = conn.info.get(_CLAIMED), conn.info.get(_CHECKPOINTED)
        _clear(conn)
        if (claimed and reached("after_claim")) or (
                checkpointed and reached("after_cursor_commit")):
            conn.connection.dbapi_connection.commit()  # type: ignore[union-attr]
            _die()

    event.listen(Engine, "begin", _clear)
    event.listen(Engine, "rollback", _clear)
    event.listen(Engine, "before_cursor_execute", before_execute)
    event.listen(Engine, "commit", before_commit)


def _written(context: Any) -> tuple[str | None, dict[str, Any]]:
    """The table an INSERT or UPDATE writes, and its bound values (``{}`` otherwise)."""
    statement = getattr(getattr(context, "compiled", None), "statement", None)
    if not isinstance(statement, (sa.Insert, sa.Update)):
        return None, {}
    parameters = context.compiled_parameters
    return statement.table.name, dict(parameters[0]) if parameters else {}


def _clear(conn: Connection) -> None:
    for flag in _FLAGS:
        conn.info.pop(flag, None)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
