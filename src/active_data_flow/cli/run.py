"""``adf run``: run one flow now, in this process."""

from __future__ import annotations

import json
from typing import Any

import click

from active_data_flow.cli._render import console, err_console, flow_progress, results_table
from active_data_flow.errors import FlowRunError
from active_data_flow.flow import DataFlow

__all__ = ["run"]


def import_flow(target: str) -> type[DataFlow]:
    """The flow class ``target`` names (``module:Class`` or ``file.py:Class``), through the
    catalog's one loader.

    Raises:
        ConfigurationError: the target cannot be loaded (one line, exit code 2).
    """
    from active_data_flow.catalog import import_flow_class

    return import_flow_class(target)


def _parse_cursor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None


@click.command()
@click.argument("target")
@click.option("--cursor", callback=_parse_cursor, metavar="JSON",
              help="Resume strictly after this position (a previous run's cursor, as JSON).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar while the flow runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(target: str, cursor: Any, progress: bool, as_json: bool) -> None:
    """Run a flow now and print what it did.

    TARGET is MODULE:FlowClass (e.g. myapp.flows:ExportUsers) or path/to/file.py:FlowClass,
    run directly; or the NAME of a flow in the flow store, run now through the store (the
    run is recorded, its cursor saved, like a heartbeat's run).
    The exit code is 0 on success, 1 when the run fails, 2 when TARGET cannot be loaded.
    """
    if ":" not in target:
        if cursor is not None:
            raise click.UsageError("--cursor applies to MODULE:FlowClass targets; stored "
                                   "flows resume from their saved cursor")
        run_stored(target, as_json)
        return
    flow_class = import_flow(target)
    try:
        flow = flow_class()
        with flow_progress(flow.spec.name, enabled=progress and not as_json) as on_progress:
            result = flow.run(cursor=cursor, on_progress=on_progress, count=True)
    except FlowRunError as exc:
        err_console.print(f"[red]Error:[/red] {exc}", highlight=False, soft_wrap=True)
        if exc.result is not None and not as_json:
            console.print(results_table([exc.result], title="Before the failure"))
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        console.print(results_table([result]))


def run_stored(name: str, as_json: bool) -> None:
    """Trigger the stored flow ``name`` and execute its run in this process."""
    from active_data_flow.cli._logs import outcomes_printed
    from active_data_flow.cli.store import open_store, runs_table
    from active_data_flow.runtimes.heartbeat import Executor
    from active_data_flow.runtimes.heartbeat.engine.worker import stopping_on_signals

    outcomes_printed()
    with open_store() as store, stopping_on_signals(f"adf run {name}") as stop:
        pending = store.trigger(name, reason="cli")
        if pending.status != "pending":
            err_console.print(f"{name} is running on {pending.worker_id}; it will run again "
                              "right after that run")
            return
        on_error = store.get_flow(name).spec.on_error
        executor = Executor(store)
        try:
            with err_console.status(f"running {name} (run {pending.id})…"):
                record = executor.execute_run(pending.id, stop=stop)
        finally:
            executor.close()
    if record is None:
        err_console.print(f"run {pending.id} of {name} was taken by another worker")
        return
    if as_json:
        click.echo(json.dumps(record.to_dict(), default=str))
    else:
        console.print(runs_table([record], title=f"{name}", on_error={record.flow: on_error}))
        if record.error:
            err_console.print(f"[red]Error:[/red] {record.error}", highlight=False)
    if record.status == "failed":
        raise SystemExit(1)
