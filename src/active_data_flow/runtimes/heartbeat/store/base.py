"""The flow store's contract: one repository per concern, and the :class:`Store` facade.

A store is five repositories (the :class:`typing.Protocol` classes below are their contract):

``flows``
    flow definitions (:class:`~active_data_flow.FlowSpec`), status, cursor, triggers.
``runs``
    runs and their claims: claiming due runs exactly once, leases, fenced checkpoints,
    finishing (which schedules the next run and queues chained flows), reclaiming runs whose
    worker died, listings.
``partitions``
    the parts of a partitioned run (Celery), claimed and checkpointed on their own.
``dead_letters``
    messages a flow could not handle, for inspection and replay.
``workers``
    heartbeat callers and when they last beat.
``inbox``
    records pushed to flows over HTTP, until their ``http_inbox`` source has read them.

:class:`~.sql.FlowStore` implements them on SQL databases and :class:`~.memory.MemoryStore`
in memory; one contract test suite runs on both. A store is data access only: no threads,
no flow code (the engine, :mod:`active_data_flow.runtimes.heartbeat.engine`, runs flows).
"""

from __future__ import annotations

import logging
import math
import os
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from active_data_flow.catalog import catalog
from active_data_flow.errors import ConfigurationError, FlowRunError, error_type
from active_data_flow.flow import FlowSpec
from active_data_flow.registry import untrusted_specs
from active_data_flow.runtimes.heartbeat.schedule import schedule_of
from active_data_flow.runtimes.heartbeat.store.records import (
    ClaimedPartition,
    ClaimedRun,
    DeadLetter,
    FlowBusy,
    FlowNotFound,
    FlowRecord,
    FlowStats,
    InboxEntry,
    InboxReceipt,
    Page,
    PartitionBusy,
    PartitionOutcome,
    PartitionRecord,
    RunCounts,
    RunRecord,
    RunStatus,
    WorkerRecord,
)

__all__ = [
    "MAX_ERROR",
    "MAX_TRACEBACK",
    "DeadLetterRepository",
    "FlowRepository",
    "InboxRepository",
    "Outcome",
    "PartitionRepository",
    "RunRepository",
    "Store",
    "StoreSettings",
    "WorkerRepository",
    "check_json_value",
    "check_page",
    "check_search",
    "check_trigger_cycle",
    "checked_spec",
    "describe",
    "next_due",
    "truncate",
    "unschedulable",
    "utcnow",
]

log = logging.getLogger(__name__)

#: What registering a code-defined flow did.
Outcome = Literal["created", "updated", "unchanged"]

#: Seconds a pending run may be overdue before monitoring calls it late.
OVERDUE_GRACE_SECONDS = 60.0


#: Limits that keep error texts inside every database's TEXT type.
MAX_ERROR = 8_000
MAX_TRACEBACK = 30_000


def truncate(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, marking the cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 20] + "\n... (truncated)"


def describe(error: BaseException | str | None) -> tuple[str | None, str | None, str | None]:
    """How a run or part records a failure: ``(error_type, error, traceback)``.

    The one format of every failure the store records: the type is that of the root cause
    (a run's ``FlowRunError`` names the transform's or the connector's error), the message
    the error's own, the traceback the cause's. A plain string is a message without type.
    """
    if error is None:
        return None, None, None
    if isinstance(error, str):
        return None, truncate(error, MAX_ERROR), None
    cause = error.__cause__ if isinstance(error, FlowRunError) and error.__cause__ else error
    trace = "".join(traceback.format_exception(cause)) if cause.__traceback__ else None
    return (error_type(cause), truncate(str(error) or type(error).__name__, MAX_ERROR),
            truncate(trace, MAX_TRACEBACK))


def paused_chain(name: str) -> FlowBusy:
    """The error of a chained trigger of a paused flow (chains never queue paused flows)."""
    return FlowBusy(f"flow {name!r} is paused: a chained trigger queues no run of it")


def next_due(spec: dict[str, Any] | None, previous_due: datetime,
             now: datetime) -> datetime | None:
    """When a flow with this stored spec is next due after a run that was due at
    ``previous_due`` (``None``: on demand)."""
    schedule = schedule_of((spec or {}).get("runtime") or {})
    return None if schedule is None else schedule.next_due(previous_due, now)


def unschedulable(spec: dict[str, Any] | None, exc: BaseException) -> str:
    """Log and describe why a flow's next run could not be scheduled (the flow is paused)."""
    name = (spec or {}).get("name")
    why = (f"the next run could not be scheduled ({type(exc).__name__}: {exc}); the flow "
           "was paused: fix its schedule, then resume it")
    log.error("flow %s: %s", name, why, extra={"action": "schedule_failed", "flow": name})
    return why


#: How deeply a stored JSON value (a spec's options, a cursor) may nest.
MAX_JSON_DEPTH = 64


def check_json_value(value: Any, option: str, *, _depth: int = 0) -> Any:
    """``value`` when every database can store it as JSON: finite numbers, no NUL character
    in a string or key (PostgreSQL's text refuses it), at most :data:`MAX_JSON_DEPTH`
    levels.

    Raises:
        ConfigurationError: naming ``option``.
    """
    if _depth > MAX_JSON_DEPTH:
        raise ConfigurationError(f"{option}: nested more than {MAX_JSON_DEPTH} levels deep",
                                 option=option)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{option}: {value!r} is not a finite number (JSON has no "
                                 "NaN or Infinity)", option=option)
    if isinstance(value, str) and "\x00" in value:
        raise ConfigurationError(f"{option}: text may not hold a NUL character", option=option)
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_json_value(key, option, _depth=_depth + 1)
            check_json_value(item, option, _depth=_depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_json_value(item, option, _depth=_depth + 1)
    return value


def check_search(search: str | None) -> None:
    """Refuse a name filter no database can compare (a NUL character)."""
    if search is not None and "\x00" in search:
        raise ConfigurationError("search: text may not hold a NUL character", option="search")


def check_trigger_cycle(spec: FlowSpec, triggers_of: Callable[[str], Sequence[str]]) -> None:
    """Refuse a flow whose ``triggers`` lead back to itself, directly (``a -> a``) or
    through other flows (``a -> b -> a``). ``triggers_of(name)`` gives a stored flow's
    triggers (empty for an unknown flow); the spec replaces the stored flow of its name.

    Raises:
        ConfigurationError: naming ``triggers`` and the cycle.
    """
    seen: set[str] = set()
    paths: list[tuple[str, ...]] = [(spec.name, name) for name in spec.triggers]
    while paths:
        *before, name = paths.pop()
        if name == spec.name:
            raise ConfigurationError(
                f"flow {spec.name!r}: its triggers form a cycle ({' -> '.join([*before, name])}"
                "): every run would queue another forever", option="triggers")
        if name in seen:
            continue
        seen.add(name)
        paths.extend((*before, name, following) for following in triggers_of(name))


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def check_page(offset: int, limit: int) -> None:
    """Validate a listing's page bounds (``limit`` 1..1000)."""
    if offset < 0 or not 1 <= limit <= 1000:
        raise ConfigurationError(f"bad page offset={offset} limit={limit} (limit 1..1000)",
                                 option="limit" if offset >= 0 else "offset")


#: A claim's lease when nothing says otherwise: a killed worker's run is reclaimed at the next
#: heartbeat after this (renewed every fifth of it, so five renewals may be missed first).
DEFAULT_LEASE_SECONDS = 10.0
LEASE_ENV = "ADF_LEASE_SECONDS"


def default_lease_seconds() -> float:
    """``ADF_LEASE_SECONDS`` (``adf.toml``: ``lease_seconds``), else 10 seconds.

    Raises:
        ConfigurationError: the variable is not a positive number.
    """
    text = os.environ.get(LEASE_ENV, "").strip()
    if not text:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise ConfigurationError(f"{LEASE_ENV} must be a number of seconds (0 < s <= 86400), "
                                 f"got {text!r}", option=LEASE_ENV)
    return value


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Timing every repository of a store shares.

    Attributes:
        lease_seconds: how long a claim stays valid without a renewal; a run whose worker
            died is reclaimed at the first heartbeat after this (default: see
            :func:`default_lease_seconds`).
        renew_seconds: how often holders renew (default: a fifth of the lease).
        clock: the current aware datetime (tests travel in time with it).
    """

    lease_seconds: float = field(default_factory=default_lease_seconds)
    renew_seconds: float | None = None
    clock: Callable[[], datetime] = field(default=utcnow)

    def __post_init__(self) -> None:
        if not self.lease_seconds > 0:
            raise ConfigurationError("lease_seconds must be positive", option="lease_seconds")
        if self.renew_seconds is not None and not 0 < self.renew_seconds < self.lease_seconds:
            raise ConfigurationError("renew_seconds must be positive and below lease_seconds",
                                     option="renew_seconds")

    @property
    def renew_every(self) -> float:
        """Seconds between renewals."""
        return self.renew_seconds or self.lease_seconds / 5

    def now(self) -> datetime:
        """The store's current time (UTC)."""
        return self.clock()

    def lease_until(self, now: datetime) -> datetime:
        """When a lease renewed at ``now`` expires."""
        return now + timedelta(seconds=self.lease_seconds)


# -- the repositories' contract --------------------------------------------------------
class FlowRepository(Protocol):
    """Flow definitions and their state."""

    def create(self, spec: FlowSpec, *, origin: Literal["code", "spec"] = "spec",
               paused: bool = False) -> FlowRecord:
        """Store a new, checked flow; a scheduled one gets its first pending run.

        Raises:
            FlowExists: the name is taken.
        """
        ...

    def update(self, name: str, spec: FlowSpec) -> FlowRecord:
        """Replace a flow's spec; a changed schedule moves its pending run."""
        ...

    def delete(self, name: str) -> None:
        """Delete a flow with its runs and dead letters (``FlowBusy`` while it runs)."""
        ...

    def get(self, name: str) -> FlowRecord:
        """The flow named ``name`` (``FlowNotFound`` if none)."""
        ...

    def page(self, *, status: str | None = None, search: str | None = None,
             offset: int = 0, limit: int = 50) -> Page[FlowRecord]:
        """Flows by name, filtered by status and by part of the name."""
        ...

    def pause(self, name: str) -> FlowRecord:
        """Stop scheduling; cancel the pending run (a running one goes on)."""
        ...

    def resume(self, name: str) -> FlowRecord:
        """Schedule again (an interval flow is due at once)."""
        ...

    def trigger(self, name: str, *, reason: str = "manual") -> RunRecord:
        """Run as soon as a heartbeat comes: the pending run becomes due now, or a run is
        queued after the running one. Returns the pending or running run."""
        ...

    def reset_cursor(self, name: str, cursor: Any = None) -> FlowRecord:
        """Set where the next run resumes (``FlowBusy`` while it runs)."""
        ...

    def cursor(self, flow_id: int) -> Any:
        """The flow's saved cursor."""
        ...

    def register_code(self, spec: FlowSpec) -> Outcome:
        """Create or update a code-defined flow from its compiled spec (``FlowExists`` when
        a flow created from JSON holds the name)."""
        ...

    def set_code_error(self, name: str, message: str | None) -> None:
        """Record (or clear, with ``None``) why a code flow's code cannot be loaded."""
        ...

    def code_flow_names(self) -> list[str]:
        """Names of the code-defined flows in the store."""
        ...

    def overdue(self, *, grace_seconds: float = OVERDUE_GRACE_SECONDS) -> list[FlowRecord]:
        """Flows whose pending run has waited more than ``grace_seconds`` past due."""
        ...

    def count_by_status(self) -> dict[str, int]:
        """How many flows are active and paused."""
        ...


class RunRepository(Protocol):
    """Runs and their claims. Every write for a running run is fenced by its claim's token:
    once a run was reclaimed or released, the former holder's writes change nothing and
    raise :class:`~active_data_flow.errors.RunClaimLost`."""

    def claim_due(self, worker_id: str, *, limit: int | None = None,
                  due_by: datetime | None = None) -> list[ClaimedRun]:
        """Claim due pending runs, oldest due first: each exactly once, however many
        callers. ``due_by``: only runs due by then (and by now)."""
        ...

    def claim(self, run_id: int, worker_id: str) -> ClaimedRun | None:
        """Claim one pending run by id, due or not (``None`` if it is not pending)."""
        ...

    def adopt(self, run_id: int, token: str, worker_id: str) -> ClaimedRun | None:
        """Take over a claimed run presenting its token (``None`` once the claim is void)."""
        ...

    def dispatched(self, run_id: int, token: str) -> ClaimedRun | None:
        """The claim of a run dispatched under ``token``, while it holds."""
        ...

    def hold_dispatched(self, claim: ClaimedRun, seconds: float) -> bool:
        """Stretch a claim's lease to ``seconds`` while it waits in a task queue."""
        ...

    def renew(self, claims: Iterable[ClaimedRun]) -> set[int]:
        """Extend the leases of a worker's claims (one statement, however many); return the
        ids of runs no longer held."""
        ...

    def begin_attempt(self, claim: ClaimedRun, attempt: int) -> tuple[Any, RunCounts]:
        """Record that a retry starts; return the flow's cursor and the run's counts."""
        ...

    def progress(self, claim: ClaimedRun, counts: RunCounts, *, error: str | None = None,
                 error_type: str | None = None) -> bool:
        """Record counts so far (and renew the lease); False if the claim is lost."""
        ...

    def checkpoint(self, claim: ClaimedRun, cursor: Any, conn: Any = None, *,
                   counts: RunCounts | None = None) -> None:
        """Save the flow's cursor for a held run, and the run's counts as of that batch
        (through ``conn``: in a sink's open transaction on the store's database, so it
        commits with the batch); renews the lease."""
        ...

    def finish(self, claim: ClaimedRun, status: RunStatus, counts: RunCounts, *,
               duration_s: float | None = None, error: BaseException | str | None = None,
               code_error: str | None = None) -> RunRecord:
        """End a held run; schedule the flow's next run; after a success, queue the flows it
        triggers (never a paused one) in the same transaction."""
        ...

    def release(self, claim: ClaimedRun, counts: RunCounts | None = None, *,
                reason: str, retry_in: float = 0.0,
                unclaim: bool = False) -> RunRecord | None:
        """Give a held run back, pending and due in ``retry_in`` seconds (cancelled if the
        flow is paused), ``reason`` as its error. ``unclaim``: the claim did no work (its
        dispatch failed), so it does not count: the attempt goes back down, and a run never
        started before is not started (no ``started_at``)."""
        ...

    def reclaim_expired(self, *, limit: int = 100) -> list[int]:
        """Fail runs whose lease expired and queue a recovery run for each flow."""
        ...

    def next_lease_expiry(self) -> datetime | None:
        """When the earliest lease of a running run expires (None: no run is running): an
        idle worker wakes then to reclaim it, instead of at its next regular beat."""
        ...

    def get(self, run_id: int) -> RunRecord:
        """The run with that id (``RunNotFound`` if none)."""
        ...

    def page(self, flow: str | None = None, status: str | None = None, *, offset: int = 0,
             limit: int = 50, count_limit: int | None = 10_000) -> Page[RunRecord]:
        """Runs, newest first."""
        ...

    def stats(self, flow: str, *, window: int = 100) -> FlowStats:
        """Aggregates over the flow's last ``window`` finished runs."""
        ...

    def count_live(self, *, overdue_after: datetime) -> dict[str, int]:
        """Runs pending, running, and pending since before ``overdue_after``."""
        ...


class PartitionRepository(Protocol):
    """The parts of partitioned runs; their writes are fenced like runs'."""

    def open(self, claim: ClaimedRun, parts: Sequence[tuple[dict[str, Any], Any]], *,
             cursor_start: Any, hold_seconds: float, concurrency_limit: int | None = None,
             concurrency_group: str | None = None,
             group_limit: int | None = None) -> list[int] | None:
        """Record a dispatched run's parts (idempotent); ``None`` once the claim is gone."""
        ...

    def claim(self, partition_id: int,
              worker_id: str) -> ClaimedPartition | PartitionBusy | None:
        """Claim a part under its concurrency limits."""
        ...

    def renew(self, claims: Iterable[ClaimedPartition]) -> set[int]:
        """Extend the leases of parts and their runs; return the ids of lost parts."""
        ...

    def checkpoint(self, claim: ClaimedPartition, cursor: Any, conn: Any = None, *,
                   counts: RunCounts | None = None) -> None:
        """Save a part's cursor and counts (``RunClaimLost`` when it is no longer held)."""
        ...

    def progress(self, claim: ClaimedPartition, counts: RunCounts) -> bool:
        """Record a part's counts so far."""
        ...

    def retry(self, claim: ClaimedPartition, counts: RunCounts, *, error: str,
              error_type: str | None = None) -> bool:
        """Give a part back, pending, to be retried from its checkpoint."""
        ...

    def finish(self, claim: ClaimedPartition, status: RunStatus, counts: RunCounts, *,
               duration_s: float | None = None,
               error: BaseException | str | None = None) -> PartitionOutcome:
        """End a part; the last one ends its run."""
        ...

    def get(self, partition_id: int) -> PartitionRecord:
        """One part (``RunNotFound`` if none)."""
        ...

    def of_run(self, run_id: int) -> list[PartitionRecord]:
        """A run's parts in source order."""
        ...


class DeadLetterRepository(Protocol):
    """Messages flows could not handle."""

    def add(self, letters: Sequence[Mapping[str, Any]], run_id: int | None) -> None:
        """Store dead letters (as :func:`active_data_flow.runner.dead_letter` makes them)."""
        ...

    def page(self, flow: str, *, offset: int = 0, limit: int = 50,
             include_replayed: bool = False) -> Page[DeadLetter]:
        """A flow's dead letters, newest first."""
        ...

    def for_replay(self, flow: str, ids: Iterable[int] | None = None, *,
                   limit: int = 10_000) -> list[DeadLetter]:
        """Unreplayed letters (those in ``ids`` only, when given), oldest first."""
        ...

    def mark_replayed(self, ids: Sequence[int]) -> None:
        """Mark letters as written through."""
        ...

    def mark_failed(self, failures: Mapping[int, str]) -> None:
        """Record why letters failed again."""
        ...

    def discard(self, flow: str, ids: Iterable[int] | None = None) -> int:
        """Delete the flow's unreplayed letters (those in ``ids`` only, when given); return
        how many were deleted (ids of other flows, replayed or unknown letters are ignored)."""
        ...


class WorkerRepository(Protocol):
    """Heartbeat callers."""

    def record_beat(self, worker_id: str, claimed: int) -> None:
        """Record that ``worker_id`` beat now, having claimed ``claimed`` runs."""
        ...

    def recent(self, *, seen_within: float | None = None) -> list[WorkerRecord]:
        """Callers, most recent first."""
        ...

    def last_beat(self) -> datetime | None:
        """When anyone last beat."""
        ...


class InboxRepository(Protocol):
    """Records pushed to flows over HTTP, read by their ``http_inbox`` source by id."""

    def push(self, flow: str, records: Sequence[tuple[str | None, Mapping[str, Any]]],
             ) -> InboxReceipt:
        """Store ``(idempotency key or None, record)`` pairs for ``flow`` durably, in one
        transaction: when it returns, they are committed. A record whose key the flow's
        inbox already holds (a retry) is not stored again, and counts as a duplicate.
        Pushes to one flow are serialised, so ids become visible in increasing order.

        Raises:
            FlowNotFound: no flow of that name.
        """
        ...

    def read(self, flow: str, after: int | None, limit: int) -> list[InboxEntry]:
        """Up to ``limit`` of the flow's entries with an id above ``after``, oldest first."""
        ...

    def count(self, flow: str, after: int | None = None) -> int:
        """How many entries the flow's inbox holds above ``after``."""
        ...

    def purge(self, flow: str, upto: int, received_before: datetime) -> int:
        """Delete the flow's entries up to id ``upto`` received before the given time
        (processed and past their retention); return how many went."""
        ...


# -- the facade --------------------------------------------------------------------------
class Store:
    """A flow store: its repositories, and the operations applications call.

    Most code needs only the methods here (create, edit, pause, trigger, list); the engine
    works with the repositories (``store.runs.claim_due(...)``) directly.
    """

    flows: FlowRepository
    runs: RunRepository
    partitions: PartitionRepository
    dead_letters: DeadLetterRepository
    workers: WorkerRepository
    inbox: InboxRepository
    settings: StoreSettings

    # -- time ----------------------------------------------------------------------------
    def now(self) -> datetime:
        """The store's current time (UTC; injectable for tests with ``clock=``)."""
        return self.settings.now()

    @property
    def lease_seconds(self) -> float:
        """How long a claim stays valid without a renewal."""
        return self.settings.lease_seconds

    @property
    def renew_seconds(self) -> float:
        """How often holders renew their claims."""
        return self.settings.renew_every

    # -- flows ---------------------------------------------------------------------------
    def create_flow(self, spec: Mapping[str, Any] | FlowSpec, *,
                    paused: bool = False) -> FlowRecord:
        """Store a new flow from its spec (a :class:`~active_data_flow.FlowSpec` or its
        JSON form).

        The spec is checked inside ``untrusted_specs()`` first (every connector and the
        runtime built once): an unknown type, a bad option or a malformed spec raises and
        nothing is stored. A scheduled flow is due at once (interval) or at its next cron
        time; ``paused=True`` stores it paused.

        Raises:
            ConfigurationError: the spec is invalid (``option`` names the field at fault).
            FlowExists: a flow already has that name.
        """
        checked = checked_spec(spec)
        check_trigger_cycle(checked, self._triggers_of)
        return self.flows.create(checked, paused=paused)

    def update_flow(self, name: str, changes: Mapping[str, Any]) -> FlowRecord:
        """Change fields of a flow created from a spec (any field of the spec but ``name``).

        The merged spec is checked like :meth:`create_flow`'s; a changed schedule moves the
        pending run. Code-defined flows change with their code (and ``adf sync``).

        Raises:
            ConfigurationError: invalid change, or the flow is defined in code.
            FlowNotFound: no such flow.
        """
        current = self.flows.get(name)
        if current.origin == "code":
            raise ConfigurationError(
                f"flow {name!r} is defined in code: change its class and run `adf sync`",
                option="name")
        if "name" in changes and changes["name"] != name:
            raise ConfigurationError("a flow cannot be renamed; create a new one", option="name")
        merged = {k: v for k, v in current.spec.to_dict().items() if v is not None}
        merged.update({k: v for k, v in changes.items() if v is not None or k == "sink"})
        if changes.get("sink") is not None:
            merged.pop("sinks", None)
        elif "sink" in changes:
            merged.pop("sink")
        checked = checked_spec(merged)
        check_trigger_cycle(checked, self._triggers_of)
        return self.flows.update(name, checked)

    def _triggers_of(self, name: str) -> Sequence[str]:
        try:
            return self.flows.get(name).spec.triggers
        except FlowNotFound:
            return ()

    def delete_flow(self, name: str) -> None:
        """Delete a flow, its runs and its dead letters (``FlowBusy`` while it runs)."""
        self.flows.delete(name)

    def get_flow(self, name: str) -> FlowRecord:
        """The flow named ``name`` (``FlowNotFound`` if none)."""
        return self.flows.get(name)

    def list_flows(self, *, status: str | None = None, search: str | None = None,
                   offset: int = 0, limit: int = 50) -> Page[FlowRecord]:
        """A page of flows ordered by name (``search``: part of the name)."""
        check_search(search)
        return self.flows.page(status=status, search=search, offset=offset, limit=limit)

    def pause(self, name: str) -> FlowRecord:
        """Stop scheduling a flow and cancel its pending run (a running run ends)."""
        return self.flows.pause(name)

    def resume(self, name: str) -> FlowRecord:
        """Schedule a paused flow again (an interval flow is due at once)."""
        return self.flows.resume(name)

    def trigger(self, name: str, *, reason: str = "manual") -> RunRecord:
        """Run a flow as soon as a heartbeat comes (a paused flow too, once)."""
        return self.flows.trigger(name, reason=reason)

    def reset_cursor(self, name: str, cursor: Any = None) -> FlowRecord:
        """Set where the flow's next run resumes (``None``: from the beginning)."""
        return self.flows.reset_cursor(name, check_json_value(cursor, "cursor"))

    def overdue_flows(self, *, grace_seconds: float = OVERDUE_GRACE_SECONDS) -> list[FlowRecord]:
        """Flows whose pending run waits past due (no heartbeat comes, or none keeps up)."""
        return self.flows.overdue(grace_seconds=grace_seconds)

    # -- runs ----------------------------------------------------------------------------
    def get_run(self, run_id: int) -> RunRecord:
        """The run with id ``run_id`` (``RunNotFound`` if none)."""
        return self.runs.get(run_id)

    def list_runs(self, flow: str | None = None, status: str | None = None, *,
                  offset: int = 0, limit: int = 50,
                  count_limit: int | None = 10_000) -> Page[RunRecord]:
        """A page of runs, newest first, by flow and by status."""
        return self.runs.page(flow, status, offset=offset, limit=limit,
                              count_limit=count_limit)

    def flow_stats(self, name: str, *, window: int = 100) -> FlowStats:
        """Aggregates over the flow's last ``window`` finished runs."""
        return self.runs.stats(name, window=window)

    def list_partitions(self, run_id: int) -> list[PartitionRecord]:
        """The parts of a partitioned run, in source order."""
        return self.partitions.of_run(run_id)

    def get_partition(self, partition_id: int) -> PartitionRecord:
        """One part of a partitioned run."""
        return self.partitions.get(partition_id)

    def list_dead_letters(self, flow: str, *, offset: int = 0, limit: int = 50,
                          include_replayed: bool = False) -> Page[DeadLetter]:
        """A page of the flow's dead letters, newest first (unreplayed only by default)."""
        return self.dead_letters.page(flow, offset=offset, limit=limit,
                                      include_replayed=include_replayed)

    # -- monitoring ----------------------------------------------------------------------
    def last_heartbeat(self) -> datetime | None:
        """When any caller last ran a heartbeat (``None``: never)."""
        return self.workers.last_beat()

    def list_workers(self, *, seen_within: float | None = None) -> list[WorkerRecord]:
        """Heartbeat callers, most recent first."""
        return self.workers.recent(seen_within=seen_within)

    def metrics(self) -> dict[str, Any]:
        """Gauges for monitoring: flows by status, live and overdue runs, heartbeat age.

        Only indexed, bounded queries (no scan of the run history).
        """
        now = self.now()
        flows = self.flows.count_by_status()
        live = self.runs.count_live(
            overdue_after=now - timedelta(seconds=OVERDUE_GRACE_SECONDS))
        last = self.workers.last_beat()
        return {
            "flows_active": flows.get("active", 0), "flows_paused": flows.get("paused", 0),
            "runs_pending": live["pending"], "runs_running": live["running"],
            "runs_overdue": live["overdue"], "last_heartbeat_at": last,
            "last_heartbeat_age_s": None if last is None else (now - last).total_seconds(),
        }

    # -- the database --------------------------------------------------------------------
    def shares_database_with(self, handle: Any) -> bool:
        """Whether writes through ``handle`` (a sink's transaction) can join the store's
        own rows in one transaction; a store without a database says no."""
        return False

    def close(self) -> None:
        """Release the store's resources."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def checked_spec(spec: Mapping[str, Any] | FlowSpec) -> FlowSpec:
    """A spec from outside the application's code (the web, a JSON file), parsed and
    checked as untrusted: components built once, the schedule read.

    Raises:
        ConfigurationError: naming the field or option at fault.
    """
    with untrusted_specs():
        parsed = FlowSpec.parse(spec).check()
    check_json_value(parsed.to_dict(), "spec")
    try:
        schedule_of(parsed.runtime.to_dict())
    except ConfigurationError as exc:
        raise ConfigurationError(f"flow {parsed.name!r}: {exc}", option=exc.option) from exc
    if parsed.transform is not None and catalog.get(parsed.transform) is None:
        raise ConfigurationError(
            f"flow {parsed.name!r}: 'transform' names {parsed.transform!r}, which is not a "
            f"loaded code flow (loaded: {', '.join(catalog.names()) or 'none'})",
            option="transform")
    return parsed
