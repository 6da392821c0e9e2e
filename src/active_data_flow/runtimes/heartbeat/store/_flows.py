"""Flows in the store: create, edit, list, pause, resume, trigger, sync with the code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat.models import (
    FlowStatus,
    RunStatus,
    dead_letters,
    flows,
    runs,
)
from active_data_flow.runtimes.heartbeat.records import (
    FlowBusy,
    FlowExists,
    FlowRecord,
    Page,
    RunRecord,
    SyncReport,
)
from active_data_flow.runtimes.heartbeat.registration import (
    FlowDefinition,
    FlowTarget,
    catalog,
    definition_from_class,
    definition_from_spec,
)
from active_data_flow.runtimes.heartbeat.schedule import schedule_of
from active_data_flow.runtimes.heartbeat.store._base import StoreBase
from active_data_flow.runtimes.heartbeat.store._rows import (
    flow_record,
    flow_select,
    run_record,
    run_select,
)

__all__ = ["FlowsMixin"]

Outcome = Literal["created", "updated", "unchanged"]


def _values(definition: FlowDefinition) -> dict[str, Any]:
    return {
        "name": definition.name, "origin": definition.origin, "source": definition.source,
        "sinks": definition.sinks, "runtime": definition.runtime,
        "dead_letter_sink": definition.dead_letter_sink, "on_error": definition.on_error,
        "batch_size": definition.batch_size, "triggers": definition.triggers or None,
        "transform": definition.transform, "spec_hash": definition.spec_hash(),
    }


def _page_bounds(offset: int, limit: int) -> None:
    if offset < 0:
        raise ConfigurationError(f"offset must be >= 0, got {offset}", option="offset")
    if not 1 <= limit <= 1000:
        raise ConfigurationError(f"limit must be 1..1000, got {limit}", option="limit")


class FlowsMixin(StoreBase):
    """The flow-management half of :class:`FlowStore`."""

    # -- create, read, update, delete ----------------------------------------------------
    def create_flow(self, spec: Mapping[str, Any], *, paused: bool = False) -> FlowRecord:
        """Store a new flow from its JSON spec (see :class:`FlowSpec`).

        The spec is validated through the connector and runtime registries inside
        ``untrusted_specs()`` first: an unknown type, a bad option or a malformed spec raises
        and nothing is stored. A scheduled flow is due at once (interval) or at its next cron
        time; ``paused=True`` stores it paused.

        Raises:
            ConfigurationError: the spec is invalid (``option`` names the field at fault).
            FlowExists: a flow already has that name.
        """
        definition = definition_from_spec(spec)
        return self._insert_definition(definition, paused=paused)

    def _insert_definition(self, definition: FlowDefinition, *, paused: bool) -> FlowRecord:
        def work(conn: Connection) -> FlowRecord:
            now = self.now()
            status = FlowStatus.PAUSED if paused else FlowStatus.ACTIVE
            try:
                result = conn.execute(flows.insert().values(
                    **_values(definition), status=status.value, created_at=now, updated_at=now))
            except sa.exc.IntegrityError:
                raise FlowExists(f"a flow named {definition.name!r} already exists",
                                 option="name") from None
            flow_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            if not paused:
                self._schedule_first(conn, flow_id, definition.runtime, now)
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    def update_flow(self, name: str, changes: Mapping[str, Any]) -> FlowRecord:
        """Change fields of a spec flow (any key of :class:`FlowSpec` but ``name``).

        The merged spec is validated like :meth:`create_flow`'s; a changed schedule moves the
        pending run. Code-defined flows change with their code (and ``adf sync``).

        Raises:
            ConfigurationError: invalid change, or the flow is defined in code.
            FlowNotFound: no such flow.
        """
        current = self.get_flow(name)
        if current.origin == "code":
            raise ConfigurationError(
                f"flow {name!r} is defined in code: change its class and run `adf sync`",
                option="name",
            )
        if "name" in changes and changes["name"] != name:
            raise ConfigurationError("a flow cannot be renamed; create a new one", option="name")
        merged = {**current.spec, **changes}
        if "sink" in changes:
            merged.pop("sinks", None)
        merged = {k: v for k, v in merged.items() if v is not None or k in ("sink", "sinks")}
        if merged.get("sink") is None:
            merged.pop("sink", None)
        definition = definition_from_spec(merged)
        return self._update_definition(current.id, definition)

    def _update_definition(self, flow_id: int, definition: FlowDefinition) -> FlowRecord:
        def work(conn: Connection) -> FlowRecord:
            now = self.now()
            live, flow = self._lock_live_then_flow(conn, flow_id)
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                **_values(definition), code_error=None, updated_at=now))
            if schedule_of(flow.runtime) != schedule_of(definition.runtime):
                self._reschedule(conn, flow_id, live, flow, definition.runtime, now)
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    def delete_flow(self, name: str) -> None:
        """Delete a flow, its runs and its dead letters.

        Raises:
            FlowBusy: a run of the flow is in progress (pause the flow and let it end).
            FlowNotFound: no such flow.
        """
        def work(conn: Connection) -> None:
            flow_id = self._flow_id(conn, name)
            live, _flow = self._lock_live_then_flow(conn, flow_id)
            if live is not None and live.status == RunStatus.RUNNING.value:
                raise FlowBusy(f"flow {name!r} is running (run {live.id}); pause it and let "
                               "the run end before deleting it")
            conn.execute(dead_letters.delete().where(dead_letters.c.flow == name))
            conn.execute(runs.delete().where(runs.c.flow_id == flow_id))
            conn.execute(flows.delete().where(flows.c.id == flow_id))

        self._db.transact(work)

    def get_flow(self, name: str) -> FlowRecord:
        """The flow named ``name``.

        Raises:
            FlowNotFound: no such flow.
        """
        return self._db.transact(lambda conn: self._flow_by_name(conn, name), write=False)

    def list_flows(
        self, *, status: str | None = None, search: str | None = None,
        offset: int = 0, limit: int = 50,
    ) -> Page[FlowRecord]:
        """A page of flows ordered by name.

        Args:
            status: only ``"active"`` or only ``"paused"`` flows.
            search: only flows whose name contains this text (case-insensitive).
            offset: how many matching flows to skip.
            limit: page size (1..1000).
        """
        _page_bounds(offset, limit)
        conditions = []
        if status is not None:
            if status not in (s.value for s in FlowStatus):
                raise ConfigurationError(f"unknown flow status {status!r}", option="status")
            conditions.append(flows.c.status == status)
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(flows.c.name.ilike(f"%{escaped}%", escape="\\"))

        def work(conn: Connection) -> Page[FlowRecord]:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(flows).where(*conditions)).scalar_one()
            rows = conn.execute(flow_select().where(*conditions).order_by(flows.c.name)
                                .offset(offset).limit(limit)).all()
            return Page([flow_record(r) for r in rows], int(total), offset, limit)

        return self._db.transact(work, write=False)

    # -- status --------------------------------------------------------------------------
    def pause(self, name: str) -> FlowRecord:
        """Stop scheduling a flow and cancel its pending run (a running run goes on to its end).

        Raises:
            FlowNotFound: no such flow.
        """
        def work(conn: Connection) -> FlowRecord:
            now = self.now()
            flow_id = self._flow_id(conn, name)
            live, _flow = self._lock_live_then_flow(conn, flow_id)
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                status=FlowStatus.PAUSED.value, rerun_requested=False, updated_at=now))
            if live is not None and live.status == RunStatus.PENDING.value:
                self._cancel_pending(conn, live.id, now, "cancelled: the flow was paused")
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    def resume(self, name: str) -> FlowRecord:
        """Schedule a paused flow again (an interval flow is due at once).

        Raises:
            FlowNotFound: no such flow.
        """
        def work(conn: Connection) -> FlowRecord:
            now = self.now()
            flow_id = self._flow_id(conn, name)
            live, flow = self._lock_live_then_flow(conn, flow_id)
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                status=FlowStatus.ACTIVE.value, updated_at=now))
            if live is None:
                self._schedule_first(conn, flow_id, flow.runtime, now)
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    def trigger(self, name: str, *, reason: str = "manual") -> RunRecord:
        """Run a flow as soon as a heartbeat comes (paused flows too, once).

        If the flow has a pending run, it becomes due now; if it is running, it runs again
        right after (``rerun_requested``). Returns the pending or running run.

        Args:
            reason: recorded as the run's ``trigger`` (``"manual"``, ``"chain"``).

        Raises:
            FlowNotFound: no such flow.
        """
        def work(conn: Connection) -> int:
            now = self.now()
            flow_id = self._flow_id(conn, name)
            live, _flow = self._lock_live_then_flow(conn, flow_id)
            if live is None:
                return self._insert_pending(conn, flow_id, reason, now, now)
            if live.status == RunStatus.PENDING.value:
                conn.execute(runs.update().where(runs.c.id == live.id).values(
                    due_at=min(live.due_at, now), trigger=reason))
            else:
                conn.execute(flows.update().where(flows.c.id == flow_id).values(
                    rerun_requested=True))
            return int(live.id)

        run_id = self._db.transact(work)
        return self._db.transact(lambda conn: run_record(conn.execute(
            run_select().where(runs.c.id == run_id)).one()), write=False)

    def reset_cursor(self, name: str, cursor: Any = None) -> FlowRecord:
        """Set where the flow's next run resumes (``None``: from the beginning).

        Raises:
            FlowBusy: a run is in progress (its checkpoints would overwrite the reset).
            FlowNotFound: no such flow.
        """
        def work(conn: Connection) -> FlowRecord:
            flow_id = self._flow_id(conn, name)
            live, _flow = self._lock_live_then_flow(conn, flow_id)
            if live is not None and live.status == RunStatus.RUNNING.value:
                raise FlowBusy(f"flow {name!r} is running (run {live.id}); reset its cursor "
                               "when the run has ended")
            now = self.now()
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                cursor=cursor, cursor_updated_at=now, updated_at=now))
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    # -- code-defined flows --------------------------------------------------------------
    def sync(self, target: FlowTarget | None = None, *, prune: bool = False) -> SyncReport:
        """Register or update code-defined flows in the store.

        Args:
            target: what to load first: a module name (``"myapp.flows"``; a package brings
                its submodules), a folder or file path, a module, or DataFlow classes.
                ``None``: ``ADF_FLOWS`` (see :mod:`~.registration`) plus anything loaded.
            prune: delete code flows that no loaded module defines any more (unless running).

        Every flow loaded in this process is synced. A code flow in the store that none
        defines is reported ``missing`` and its record gets a ``code_error`` saying why
        (including the import errors of modules that failed to load).
        """
        report = SyncReport()
        loaded = catalog.load(target) if target is not None else catalog.load_defaults()
        report.errors.update(loaded.errors)
        for flow_class in catalog.classes():
            try:
                definition = definition_from_class(flow_class)
            except ConfigurationError as exc:
                report.errors[flow_class.name] = str(exc)
                self._set_code_error(flow_class.name, str(exc))
                continue
            try:
                outcome = self._upsert_code_flow(definition)
            except FlowExists as exc:
                report.errors[definition.name] = str(exc)
                continue
            getattr(report, outcome).append(definition.name)
        self._flag_missing(report, prune)
        return report

    def _upsert_code_flow(self, definition: FlowDefinition) -> Outcome:
        for _ in range(2):  # a concurrent sync may insert it between our read and insert
            found = self._db.transact(lambda conn: conn.execute(
                sa.select(flows.c.id).where(flows.c.name == definition.name)).scalar(),
                write=False)
            if found is None:
                try:
                    self._insert_definition(definition, paused=False)
                    return "created"
                except FlowExists:
                    continue
            return self._update_code_flow(int(found), definition)
        return "unchanged"

    def _update_code_flow(self, flow_id: int, definition: FlowDefinition) -> Outcome:
        def work(conn: Connection) -> Outcome:
            live, flow = self._lock_live_then_flow(conn, flow_id)
            row = conn.execute(sa.select(flows.c.origin, flows.c.spec_hash, flows.c.code_error)
                               .where(flows.c.id == flow_id)).one()
            if row.origin != "code":
                raise FlowExists(
                    f"a flow named {definition.name!r} was created from a spec; rename the "
                    "code flow or delete the stored one", option="name")
            now = self.now()
            if row.spec_hash == definition.spec_hash():
                if row.code_error is not None:
                    conn.execute(flows.update().where(flows.c.id == flow_id).values(
                        code_error=None))
                return "unchanged"
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                **_values(definition), code_error=None, updated_at=now))
            if schedule_of(flow.runtime) != schedule_of(definition.runtime):
                self._reschedule(conn, flow_id, live, flow, definition.runtime, now)
            return "updated"

        return self._db.transact(work)

    def _set_code_error(self, name: str, message: str | None) -> None:
        self._db.transact(lambda conn: conn.execute(
            flows.update().where(flows.c.name == name, flows.c.origin == "code")
            .values(code_error=message)))

    def _flag_missing(self, report: SyncReport, prune: bool) -> None:
        known = set(catalog.names())
        stored = self._db.transact(lambda conn: conn.execute(
            sa.select(flows.c.name).where(flows.c.origin == "code")).scalars().all(),
            write=False)
        for name in sorted(set(stored) - known):
            if prune:
                try:
                    self.delete_flow(name)
                    report.removed.append(name)
                    continue
                except FlowBusy as exc:
                    report.errors[name] = str(exc)
            report.missing.append(name)
            self._set_code_error(name, catalog.missing_message(name))
