"""``adf trigger FLOW`` and ``adf cursor FLOW``: the web engine's flow buttons, on the
command line (through the store's repositories, like the web API)."""

from __future__ import annotations

import json
from typing import Any

import click

from active_data_flow.cli._render import console, format_cursor
from active_data_flow.cli.store import open_store, styled, when

__all__ = ["cursor", "trigger"]


@click.command()
@click.argument("flow")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def trigger(flow: str, as_json: bool) -> None:
    """Queue a run of FLOW now: the next heartbeat or worker runs it (a paused flow too,
    once). ``adf run FLOW`` runs it in this process instead."""
    with open_store() as store:
        run = store.trigger(flow, reason="cli")
    if as_json:
        click.echo(json.dumps(run.to_dict(), default=str))
    elif run.status == "pending":
        console.print(f"{flow}: run {run.id} queued ({styled(run.status)}, due "
                      f"{when(run.due_at)}); a heartbeat or `adf worker` runs it")
    else:
        console.print(f"{flow}: run {run.id} is {styled(run.status)} on {run.worker_id}; "
                      "the flow runs again right after it")


def _parse_json(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc}); a text cursor needs quotes: --set '\"abc\"'") from None


@click.command()
@click.argument("flow")
@click.option("--reset", is_flag=True, help="Forget the cursor: the next run reads from the "
                                           "beginning.")
@click.option("--set", "value", callback=_parse_json, metavar="JSON",
              help="Resume the next run strictly after this position (JSON, e.g. 42 or "
                   "'{\"updated_at\": \"2026-01-01T00:00:00\", \"id\": 7}').")
def cursor(flow: str, reset: bool, value: Any) -> None:
    """Show FLOW's cursor (where its next run resumes), or move it.

    Refused while the flow runs (its run moves the cursor itself).
    """
    if reset and value is not None:
        raise click.UsageError("give --reset or --set, not both")
    with open_store() as store:
        if reset or value is not None:
            before = store.get_flow(flow).cursor
            record = store.reset_cursor(flow, value)
            console.print(f"{flow}: cursor {_text(before)} -> {_text(record.cursor)}",
                          highlight=False)
            return
        record = store.get_flow(flow)
    console.print(f"{flow}: cursor {_text(record.cursor)}", highlight=False)


def _text(value: Any) -> str:
    return "none (reads from the beginning)" if value is None else format_cursor(value)
