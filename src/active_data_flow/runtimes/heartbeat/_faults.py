"""Test-only fault injection: named crash points and the claim-guard switch.

Both are driven by environment variables that production never sets:

``ADF_TEST_CRASH_AT=<point>[:<n>]``
    the process kills itself with SIGKILL the ``n``-th time (default: first) it reaches the
    named point. Points: ``after_claim``, ``mid_batch`` (called by test sinks while a batch is
    written but not committed), ``after_sink_commit`` (the batch is durable, its cursor not
    yet), ``after_cursor_commit``, ``while_finishing`` (the run's final status is written but
    not committed).
``ADF_TEST_CLAIM_GUARD=off``
    claims read due runs without locking them and update them unconditionally: the race the
    guard prevents. The concurrency tests use it to prove they can detect double runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

__all__ = ["CRASH_POINTS", "claim_guard_enabled", "crash_point"]

log = logging.getLogger(__name__)

CRASH_POINTS = ("after_claim", "mid_batch", "after_sink_commit", "after_cursor_commit",
                "while_finishing")

_hits: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no clean-up) if ``ADF_TEST_CRASH_AT`` names this point."""
    wanted = os.environ.get("ADF_TEST_CRASH_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        count = _hits[name]
    if count >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def claim_guard_enabled() -> bool:
    """False only when a test switched the claim guard off (``ADF_TEST_CLAIM_GUARD=off``)."""
    if os.environ.get("ADF_TEST_CLAIM_GUARD", "").lower() == "off":
        log.warning("claim guard is OFF (ADF_TEST_CLAIM_GUARD=off): runs may execute twice")
        return False
    return True
