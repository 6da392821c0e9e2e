"""The runnable flow of a stored record: its code (from the catalog) over its spec."""

from __future__ import annotations

from contextlib import nullcontext

from active_data_flow.catalog import FlowCatalog, catalog
from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import DataFlow
from active_data_flow.registry import untrusted_specs
from active_data_flow.runtimes.heartbeat.store.records import FlowCodeError, FlowRecord

__all__ = ["cursor_lag", "flow_for"]


def flow_for(record: FlowRecord, *, flows: FlowCatalog | None = None) -> DataFlow:
    """The runnable flow for a stored record: its code (from the catalog) over its spec.

    A code flow is the loaded class of that name over the spec that class compiles to, which
    must be the stored one (else the store and the code disagree: run ``adf sync``). A flow
    created from JSON is its stored spec, run by the code flow its ``transform`` names (or
    passed through unchanged); build its connectors inside ``untrusted_specs()``.

    Raises:
        FlowCodeError: the code the flow needs is not loaded, fails to build, or describes
            the flow differently from the store.
    """
    found = flows or catalog
    if record.origin == "code":
        flow_class = found.get(record.name)
        if flow_class is None:
            raise FlowCodeError(found.missing_message(record.name), option="name")
        try:
            spec = flow_class.flow_spec()
        except ConfigurationError as exc:
            raise FlowCodeError(f"flow {record.name!r} cannot be built: {exc}",
                                option=exc.option) from exc
        if spec.digest() != record.spec.digest():
            raise FlowCodeError(
                f"flow {record.name!r}: the code this process loaded describes the flow "
                "differently from the store (its options changed); run `adf sync` after "
                "deploying, or restart the workers that run older code", option="name")
        return flow_class(spec)
    if record.spec.transform is None:
        return DataFlow(record.spec)
    flow_class = found.get(record.spec.transform)
    if flow_class is None:
        raise FlowCodeError(found.missing_message(record.spec.transform, record.name),
                            option="transform")
    return flow_class(record.spec)


def cursor_lag(record: FlowRecord, *, flows: FlowCatalog | None = None) -> int | None:
    """How many messages the flow's source holds after its cursor, when the source can tell
    (it implements ``lag(cursor) -> int | None``); else ``None``."""
    flow = flow_for(record, flows=flows)
    with untrusted_specs() if record.origin == "spec" else nullcontext():
        source = flow.spec.build_source()
    try:
        lag = getattr(source, "lag", None)
        return None if lag is None else lag(record.cursor)
    finally:
        source.close()
