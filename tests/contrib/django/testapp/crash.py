"""Crash points for the Django sink, injected into a ``manage.py adf`` process by the tests
(``ADF_TEST_DJANGO_CRASH=point:nth``; test code, never imported by the package).

``mid_batch``
    the sink's rows are written and the checkpoint's ``UPDATE adf_runs`` is about to run in
    the same ``atomic`` block: the process dies, nothing of the batch is committed.
``after_cursor_commit``
    the block holding a checkpoint has committed (Django's ``on_commit``): rows and cursor
    are durable, nothing after them.
``before_first_batch``
    the run is claimed (committed by the store) and its first batch is about to be written.
``while_finishing``
    the store's finishing transaction (SQLAlchemy), as in the engine's crash tests.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from django.db import connections, transaction
from django.db.backends.signals import connection_created


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_from_env() -> None:
    spec = os.environ.get("ADF_TEST_DJANGO_CRASH")
    if not spec:
        return
    point, _, nth_text = spec.partition(":")
    nth = int(nth_text or 1)
    if point == "while_finishing":
        from tests.integration.runtimes.heartbeat.crash import install

        install(point, nth)
        return
    hits = [0]

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if point == "before_first_batch" and "TESTAPP_COPYLOG" in sql.upper() and \
                sql.lstrip().upper().startswith("INSERT"):
            _die()
        if sql.lstrip().upper().startswith("UPDATE ADF_RUNS"):
            hits[0] += 1
            if hits[0] == nth:
                if point == "mid_batch":
                    _die()
                result = execute(sql, params, many, context)
                transaction.on_commit(_die, using=context["connection"].alias)
                return result
        return execute(sql, params, many, context)

    def add(connection: Any) -> None:
        if wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)

    for connection in connections.all():
        add(connection)
    connection_created.connect(lambda sender, connection, **_: add(connection), weak=False)
