"""Keeping claimed runs' leases alive while this process works on them.

One thread per store renews every lease the process holds (runs executing and runs claimed but
still queued) every ``renew_seconds``, in one transaction. A renewal that matches no row means
another worker reclaimed the run: the holder's ``lost`` event is set, so its executor stops
after the current batch, and its later writes are fenced off anyway.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from active_data_flow.runtimes.heartbeat.records import ClaimedRun, StoreError

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.store import FlowStore

__all__ = ["Held", "LeaseKeeper"]

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Held:
    """A claim this process holds. ``lost`` is set once another worker has reclaimed it."""

    claim: ClaimedRun
    lost: threading.Event = field(default_factory=threading.Event)


class LeaseKeeper:
    """Renews the leases of the claims held in this process (see the module docstring)."""

    def __init__(self, store: FlowStore) -> None:
        self._store = store
        self._held: dict[int, Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, claim: ClaimedRun) -> Held:
        """Start renewing ``claim``'s lease; returns its handle (idempotent)."""
        with self._lock:
            held = self._held.get(claim.run_id)
            if held is None or held.claim.token != claim.token:
                held = self._held[claim.run_id] = Held(claim)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="adf-lease-keeper",
                                                daemon=True)
                self._thread.start()
        return held

    def release(self, claim: ClaimedRun) -> None:
        """Stop renewing ``claim``'s lease (the run ended, or was handed over)."""
        with self._lock:
            held = self._held.get(claim.run_id)
            if held is not None and held.claim.token == claim.token:
                del self._held[claim.run_id]

    def held(self) -> list[Held]:
        """The claims held now."""
        with self._lock:
            return list(self._held.values())

    def renew_now(self) -> set[int]:
        """Renew every held lease once, now; return the ids found lost."""
        held = self.held()
        if not held:
            return set()
        lost = self._store.renew(h.claim for h in held)
        for h in held:
            if h.claim.run_id in lost:
                if not h.lost.is_set():
                    log.warning("run %s: claim lost (reclaimed by another worker)",
                                h.claim.run_id, extra={"action": "claim_lost"})
                h.lost.set()
        return lost

    def _loop(self) -> None:
        while not self._stop.wait(self._store.renew_seconds):
            try:
                self.renew_now()
            except StoreError as exc:  # retried inside; the next tick tries again
                log.warning("lease renewal failed: %s", exc, extra={"action": "renew_failed"})
            except Exception:
                log.exception("lease renewal failed")
            with self._lock:
                if not self._held:
                    self._thread = None
                    return

    def close(self) -> None:
        """Stop the renewal thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
