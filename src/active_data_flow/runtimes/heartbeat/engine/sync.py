"""Registering the application's code-defined flows in the store (``adf sync``)."""

from __future__ import annotations

from pydantic import Field

from active_data_flow.catalog import FlowCatalog, FlowTarget, catalog
from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat.schedule import schedule_of
from active_data_flow.runtimes.heartbeat.store import FlowBusy, FlowExists, Store
from active_data_flow.runtimes.heartbeat.store.records import Record

__all__ = ["SyncReport", "sync"]


class SyncReport(Record):
    """What :func:`sync` did, by flow name.

    Attributes:
        created, updated, unchanged: flows registered, changed, or already up to date.
        missing: code flows in the store that no loaded module defines (their record now
            carries a ``code_error``); removed when ``prune=True``.
        errors: flow or module -> why it could not be loaded or registered.
    """

    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed to load or register."""
        return not self.errors


def sync(store: Store, target: FlowTarget | None = None, *, prune: bool = False,
         flows: FlowCatalog | None = None, quiet: bool = False) -> SyncReport:
    """Register or update code-defined flows in the store.

    Args:
        store: the flow store.
        target: what to load first: a module name (``"myapp.flows"``; a package brings its
            submodules), a folder or file path, a module, or DataFlow classes. ``None``:
            ``ADF_FLOWS`` (see :mod:`.catalog`) plus anything loaded already.
        prune: delete code flows that no loaded module defines any more (unless running).
        flows: the catalog (default: the process-wide one).
        quiet: do not log modules that fail to load (the caller reports ``errors``).

    Every flow loaded in this process is synced. A code flow in the store that none defines
    is reported ``missing`` and its record gets a ``code_error`` saying why (including the
    import errors of modules that failed to load).
    """
    known = flows or catalog
    report = SyncReport()
    loaded = (known.load(target, quiet=quiet) if target is not None
              else known.load_defaults(quiet=quiet))
    report.errors.update(loaded.errors)
    for flow_class in known.classes():
        try:
            spec = flow_class.flow_spec()
            schedule_of(spec.runtime.to_dict())
            outcome = store.flows.register_code(spec)
        except ConfigurationError as exc:
            message = str(exc)
            if not message.startswith(f"flow {flow_class.name!r}"):
                message = f"flow {flow_class.name!r}: {message}"
            report.errors[flow_class.name] = message
            if not isinstance(exc, FlowExists):
                store.flows.set_code_error(flow_class.name, message)
            continue
        getattr(report, outcome).append(flow_class.name)
    _flag_missing(store, known, report, prune)
    return report


def _flag_missing(store: Store, known: FlowCatalog, report: SyncReport, prune: bool) -> None:
    defined = set(known.names())
    for name in sorted(set(store.flows.code_flow_names()) - defined):
        if prune:
            try:
                store.flows.delete(name)
                report.removed.append(name)
                continue
            except FlowBusy as exc:
                report.errors[name] = str(exc)
        report.missing.append(name)
        store.flows.set_code_error(name, known.missing_message(name))
