"""``adf dead-letters FLOW``: list a flow's dead letters, replay them, or discard them
(the web engine's dead-letter page, on the command line)."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from active_data_flow.cli._render import console, err_console, format_cursor
from active_data_flow.cli.store import open_store, when

__all__ = ["dead_letters"]


@click.command("dead-letters")
@click.argument("flow")
@click.option("--replay", "action", flag_value="replay",
              help="Run the chosen letters through the flow's transform and sinks again "
                   "(the code as it is now); those written are marked replayed.")
@click.option("--discard", "action", flag_value="discard",
              help="Delete the chosen letters (replayed ones are kept as history).")
@click.option("--id", "ids", multiple=True, type=click.IntRange(1), metavar="ID",
              help="A letter to replay or discard (repeatable).")
@click.option("--all", "every", is_flag=True,
              help="Replay or discard every unreplayed letter of FLOW.")
@click.option("--include-replayed", is_flag=True, help="List replayed letters too.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print letters (or the outcome) as JSON.")
def dead_letters(flow: str, action: str | None, ids: tuple[int, ...], every: bool,
                 include_replayed: bool, limit: int, offset: int, as_json: bool) -> None:
    """List FLOW's dead letters (messages it could not handle), newest first; with
    --replay or --discard, act on those chosen by --id (repeatable) or --all.

    \b
    Examples:
      adf dead-letters orders                    the unreplayed letters
      adf dead-letters orders --replay --all     after fixing the transform
      adf dead-letters orders --discard --id 12 --id 13
    Replay exits 1 when a letter failed again (it stays, with the new error).
    """
    if action is None:
        if ids or every:
            raise click.UsageError("--id and --all choose letters for --replay or --discard")
        _list(flow, include_replayed, limit, offset, as_json)
        return
    if bool(ids) == every:
        raise click.UsageError(f"say which letters to {action}: --id ID (repeatable) or --all")
    chosen = list(ids) if ids else None
    if action == "replay":
        _replay(flow, chosen, as_json)
    else:
        _discard(flow, chosen, as_json)


def _list(flow: str, include_replayed: bool, limit: int, offset: int, as_json: bool) -> None:
    with open_store() as store:
        store.get_flow(flow)  # an unknown flow is an error, not an empty list
        page = store.list_dead_letters(flow, offset=offset, limit=limit,
                                       include_replayed=include_replayed)
    if as_json:
        for letter in page.items:
            click.echo(json.dumps(letter.to_dict(), default=str))
        return
    table = Table(title=f"Dead letters of {flow} ({page.total})", title_justify="left")
    for column in ("id", "run", "failed", "position"):
        table.add_column(column, justify="right" if column in ("id", "run") else "left",
                         no_wrap=True)
    table.add_column("error", overflow="fold", ratio=1)
    table.add_column("message", overflow="fold", ratio=1)
    for letter in page.items:
        error = f"[red]{letter.error_type or 'error'}: {letter.error or ''}[/red]"
        if letter.replayed_at is not None:
            error = f"[green]replayed {when(letter.replayed_at)}[/green] · " + error
        elif letter.replay_error:
            error += f" · [yellow]replay failed: {letter.replay_error}[/yellow]"
        table.add_row(str(letter.id), str(letter.run_id or "-"), when(letter.failed_at),
                      format_cursor(letter.position), error,
                      json.dumps(letter.message, default=str), )
    console.print(table)
    if page.total > offset + len(page.items):
        console.print(f"[dim]{page.total - offset - len(page.items)} more: use --offset[/dim]")


def _replay(flow: str, ids: list[int] | None, as_json: bool) -> None:
    from active_data_flow.runtimes.heartbeat.engine.deadletters import replay

    with open_store() as store:
        report = replay(store, flow, ids)
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json")))
    else:
        style = "red" if report.failed else "green"
        console.print(f"[{style}]{flow}: replayed {len(report.replayed)}, failed again "
                      f"{len(report.failed)}[/] ({report.written} record(s) written)")
        for letter_id, error in sorted(report.failed.items()):
            err_console.print(f"  letter {letter_id}: {error}", highlight=False)
    if report.failed:
        sys.exit(1)


def _discard(flow: str, ids: list[int] | None, as_json: bool) -> None:
    with open_store() as store:
        store.get_flow(flow)
        count = store.dead_letters.discard(flow, ids)
    if as_json:
        click.echo(json.dumps({"discarded": count}))
    else:
        console.print(f"{flow}: discarded {count} dead letter(s)")
