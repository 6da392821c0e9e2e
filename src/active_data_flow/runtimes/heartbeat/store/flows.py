"""Flows in SQL: definitions (one FlowSpec per row), status, cursor, triggers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import FlowSpec
from active_data_flow.runtimes.heartbeat.schedule import schedule_of
from active_data_flow.runtimes.heartbeat.store._rows import (
    flow_record,
    flow_select,
    run_record,
    run_select,
)
from active_data_flow.runtimes.heartbeat.store._shared import SqlRepository
from active_data_flow.runtimes.heartbeat.store.base import (
    OVERDUE_GRACE_SECONDS,
    Outcome,
    check_json_value,
    check_page,
    check_search,
    check_trigger_cycle,
    paused_chain,
)
from active_data_flow.runtimes.heartbeat.store.models import dead_letters, flows, inbox, runs
from active_data_flow.runtimes.heartbeat.store.records import (
    FlowBusy,
    FlowExists,
    FlowNotFound,
    FlowRecord,
    FlowStatus,
    Page,
    RunRecord,
    RunStatus,
)

__all__ = ["SqlFlows"]


def _values(spec: FlowSpec) -> dict[str, Any]:
    return {"name": spec.name, "spec": spec.to_dict(), "spec_hash": spec.digest()}


def _runtime(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(spec.get("runtime") or {})


class SqlFlows(SqlRepository):
    """The flows repository on a SQL database (see :class:`~.base.FlowRepository`)."""

    # -- create, read, update, delete ----------------------------------------------------
    def create(self, spec: FlowSpec, *, origin: Literal["code", "spec"] = "spec",
               paused: bool = False) -> FlowRecord:
        values = _values(spec)

        def work(conn: Connection) -> FlowRecord:
            now = self.now()
            status = FlowStatus.PAUSED if paused else FlowStatus.ACTIVE
            try:
                result = conn.execute(flows.insert().values(
                    **values, origin=origin, status=status.value, created_at=now,
                    updated_at=now))
            except sa.exc.IntegrityError:
                raise FlowExists(f"a flow named {spec.name!r} already exists",
                                 option="name") from None
            flow_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            if not paused:
                self._schedule_first(conn, flow_id, values["spec"], now)
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    def update(self, name: str, spec: FlowSpec) -> FlowRecord:
        values = _values(spec)

        def work(conn: Connection) -> FlowRecord:
            now = self.now()
            flow_id = self._flow_id(conn, name)
            live, flow = self._lock_live_then_flow(conn, flow_id)
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                **values, code_error=None, updated_at=now))
            if schedule_of(_runtime(flow.spec)) != schedule_of(_runtime(values["spec"])):
                self._reschedule(conn, flow_id, live, flow, values["spec"], now)
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    def delete(self, name: str) -> None:
        def work(conn: Connection) -> None:
            flow_id = self._flow_id(conn, name)
            live, _flow = self._lock_live_then_flow(conn, flow_id)
            if live is not None and live.status == RunStatus.RUNNING.value:
                raise FlowBusy(f"flow {name!r} is running (run {live.id}); pause it and let "
                               "the run end before deleting it")
            conn.execute(dead_letters.delete().where(dead_letters.c.flow == name))
            conn.execute(inbox.delete().where(inbox.c.flow == name))
            conn.execute(runs.delete().where(runs.c.flow_id == flow_id))
            conn.execute(flows.delete().where(flows.c.id == flow_id))

        self._db.transact(work)

    def get(self, name: str) -> FlowRecord:
        return self._db.transact(lambda conn: self._flow_by_name(conn, name), write=False)

    def page(self, *, status: str | None = None, search: str | None = None,
             offset: int = 0, limit: int = 50) -> Page[FlowRecord]:
        check_page(offset, limit)
        check_search(search)
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
            return Page(items=[flow_record(r) for r in rows], total=int(total), offset=offset,
                        limit=limit)

        return self._db.transact(work, write=False)

    # -- status --------------------------------------------------------------------------
    def pause(self, name: str) -> FlowRecord:
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
        def work(conn: Connection) -> FlowRecord:
            now = self.now()
            flow_id = self._flow_id(conn, name)
            live, flow = self._lock_live_then_flow(conn, flow_id)
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                status=FlowStatus.ACTIVE.value, updated_at=now))
            if live is None:
                self._schedule_first(conn, flow_id, flow.spec, now)
            return self._flow_by_id(conn, flow_id)

        return self._db.transact(work)

    def trigger(self, name: str, *, reason: str = "manual") -> RunRecord:
        def work(conn: Connection) -> RunRecord:
            run_id = self._trigger(conn, self._flow_id(conn, name), reason, self.now())
            if run_id is None:
                raise paused_chain(name)
            return run_record(conn.execute(run_select().where(runs.c.id == run_id)).one())

        return self._db.transact(work)

    def reset_cursor(self, name: str, cursor: Any = None) -> FlowRecord:
        check_json_value(cursor, "cursor")

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

    def cursor(self, flow_id: int) -> Any:
        return self._db.transact(lambda conn: conn.execute(
            sa.select(flows.c.cursor).where(flows.c.id == flow_id)).scalar(), write=False)

    # -- code-defined flows --------------------------------------------------------------
    def register_code(self, spec: FlowSpec) -> Outcome:
        check_trigger_cycle(spec, self._triggers_of)
        for _ in range(2):  # a concurrent sync may insert it between our read and insert
            found = self._db.transact(lambda conn: conn.execute(
                sa.select(flows.c.id).where(flows.c.name == spec.name)).scalar(), write=False)
            if found is None:
                try:
                    self.create(spec, origin="code")
                    return "created"
                except FlowExists:
                    continue
            return self._update_code(int(found), spec)
        return "unchanged"

    def _update_code(self, flow_id: int, spec: FlowSpec) -> Outcome:
        values = _values(spec)

        def work(conn: Connection) -> Outcome:
            live, flow = self._lock_live_then_flow(conn, flow_id)
            row = conn.execute(sa.select(flows.c.origin, flows.c.spec_hash, flows.c.code_error)
                               .where(flows.c.id == flow_id)).one()
            if row.origin != "code":
                raise FlowExists(
                    f"a flow named {spec.name!r} was created from a spec; rename the "
                    "code flow or delete the stored one", option="name")
            if row.spec_hash == values["spec_hash"]:
                if row.code_error is not None:
                    conn.execute(flows.update().where(flows.c.id == flow_id).values(
                        code_error=None))
                return "unchanged"
            now = self.now()
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                **values, code_error=None, updated_at=now))
            if schedule_of(_runtime(flow.spec)) != schedule_of(_runtime(values["spec"])):
                self._reschedule(conn, flow_id, live, flow, values["spec"], now)
            return "updated"

        return self._db.transact(work)

    def _triggers_of(self, name: str) -> tuple[str, ...]:
        try:
            return self.get(name).spec.triggers
        except FlowNotFound:
            return ()

    def set_code_error(self, name: str, message: str | None) -> None:
        self._db.transact(lambda conn: conn.execute(
            flows.update().where(flows.c.name == name, flows.c.origin == "code")
            .values(code_error=message)))

    def code_flow_names(self) -> list[str]:
        return list(self._db.transact(lambda conn: conn.execute(
            sa.select(flows.c.name).where(flows.c.origin == "code")).scalars().all(),
            write=False))

    # -- monitoring ----------------------------------------------------------------------
    def overdue(self, *, grace_seconds: float = OVERDUE_GRACE_SECONDS) -> list[FlowRecord]:
        def work(conn: Connection) -> list[FlowRecord]:
            limit = self.now() - timedelta(seconds=grace_seconds)
            late = sa.select(runs.c.flow_id).where(
                runs.c.status == RunStatus.PENDING.value, runs.c.due_at < limit)
            rows = conn.execute(flow_select().where(flows.c.id.in_(late))
                                .order_by(flows.c.name).limit(1000))
            return [flow_record(r) for r in rows]

        return self._db.transact(work, write=False)

    def count_by_status(self) -> dict[str, int]:
        rows = self._db.transact(lambda conn: conn.execute(
            sa.select(flows.c.status, sa.func.count()).group_by(flows.c.status)).all(),
            write=False)
        return {str(status): int(n) for status, n in rows}
