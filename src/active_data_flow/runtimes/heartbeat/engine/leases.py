"""Keeping claims alive while this process works on them: the one lease renewer.

One thread per executor renews every claim the process holds (whole runs executing or
queued, and parts of partitioned runs) every ``renew_seconds``: one statement for all its
runs, one for its parts. A renewal that matches no row means another worker took the claim
over: the holder's ``lost`` event is set, so its executor stops before writing another
batch, and its later writes are fenced off anyway. A claim that ended while the renewal was
on its way (its run finished in the meantime) is not a lost claim: only claims still held
once the renewal returns are marked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from active_data_flow.runtimes.heartbeat.store import (
    ClaimedPartition,
    ClaimedRun,
    Store,
    StoreError,
)

__all__ = ["Claim", "Held", "LeaseRenewer"]

log = logging.getLogger(__name__)

#: What a worker holds: a whole run, or one part of a partitioned run.
Claim = ClaimedRun | ClaimedPartition


def _key(claim: Claim) -> tuple[str, int]:
    if isinstance(claim, ClaimedPartition):
        return "part", claim.partition_id
    return "run", claim.run_id


@dataclass(eq=False, slots=True)
class Held:
    """A claim this process holds. ``lost`` is set once another worker took it over;
    ``ending`` once its executor writes the outcome (finish, release), after which the claim
    ending is no longer news."""

    claim: Claim
    lost: threading.Event = field(default_factory=threading.Event)
    ending: threading.Event = field(default_factory=threading.Event)


class LeaseRenewer:
    """Renews the leases of the claims held in this process (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._held: dict[tuple[str, int], Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, claim: Claim) -> Held:
        """Start renewing ``claim``'s lease; returns its handle (idempotent)."""
        with self._lock:
            held = self._held.get(_key(claim))
            if held is None or held.claim.token != claim.token:
                held = self._held[_key(claim)] = Held(claim)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="adf-lease-renewer",
                                                daemon=True)
                self._thread.start()
        return held

    def release(self, claim: Claim) -> None:
        """Stop renewing ``claim``'s lease (the work ended, or was handed over)."""
        with self._lock:
            held = self._held.get(_key(claim))
            if held is not None and held.claim.token == claim.token:
                del self._held[_key(claim)]

    def held(self) -> list[Held]:
        """The claims held now."""
        with self._lock:
            return list(self._held.values())

    def renew_now(self) -> set[int]:
        """Renew every held lease once, now; return the run (or part) ids found lost."""
        runs: dict[int, tuple[ClaimedRun, Held]] = {}
        parts: dict[int, tuple[ClaimedPartition, Held]] = {}
        for h in self.held():
            if isinstance(h.claim, ClaimedPartition):
                parts[h.claim.partition_id] = (h.claim, h)
            else:
                runs[h.claim.run_id] = (h.claim, h)
        lost: set[int] = set()
        if runs:
            lost |= self._mark(runs, self._store.runs.renew(c for c, _ in runs.values()))
        if parts:
            lost |= self._mark(parts, self._store.partitions.renew(c for c, _ in parts.values()))
        return lost

    def revoke(self, claim: Claim) -> None:
        """Treat ``claim`` as lost from now on (its process gives it back): its executor
        writes no further batch."""
        with self._lock:
            held = self._held.get(_key(claim))
        if held is not None and held.claim.token == claim.token:
            held.lost.set()

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

    def _still_held(self, held: Held) -> bool:
        with self._lock:
            return self._held.get(_key(held.claim)) is held

    def _mark(self, held: Mapping[int, tuple[Claim, Held]], gone: set[int]) -> set[int]:
        lost = set()
        for key in gone:
            entry = held.get(key)
            if entry is None or entry[1].ending.is_set() or not self._still_held(entry[1]):
                continue  # it ended meanwhile, through its own executor: not lost
            lost.add(key)
            if not entry[1].lost.is_set():
                log.warning("%s: claim lost (taken over by another worker)",
                            _describe(entry[0]), extra={"action": "claim_lost"})
                entry[1].lost.set()
        return lost


def _describe(claim: Claim) -> str:
    if isinstance(claim, ClaimedPartition):
        return f"partition {claim.part} of run {claim.run_id}"
    return f"run {claim.run_id}"
