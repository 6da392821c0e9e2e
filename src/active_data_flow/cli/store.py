"""``adf`` commands for the flow store and the heartbeat runtime.

``db`` (migrations), ``sync``, ``list``, ``runs``, ``heartbeat``, ``worker``, ``pause``,
``resume``, ``init`` and ``new flow``; ``adf run FLOW`` (a stored flow) lives in
:mod:`.run`, ``trigger`` and ``cursor`` in :mod:`.flow_ops`, ``dead-letters`` in
:mod:`.dead_letters`. The store's database is ``ADF_DATABASE_URL`` (or ``adf.toml``, see
:mod:`.config`), the code-defined flows are loaded from ``ADF_FLOWS``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from active_data_flow.cli._errors import ConfigurationMistake, echo_error, one_line
from active_data_flow.cli._render import console, format_cursor
from active_data_flow.cli.scaffold import init, new

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat import FlowStore
    from active_data_flow.runtimes.heartbeat.engine.beat import BeatSummary
    from active_data_flow.runtimes.heartbeat.store import FlowRecord, RunRecord

__all__ = [
    "db",
    "heartbeat",
    "init",
    "list_flows",
    "new",
    "open_store",
    "pause",
    "resume",
    "runs",
    "sync",
    "worker",
]

log = logging.getLogger("active_data_flow.cli.worker")

STATUS_STYLE = {
    "succeeded": "green", "failed": "bold red", "running": "cyan", "pending": "yellow",
    "cancelled": "dim", "active": "green", "paused": "yellow",
}


LEASE_HELP = ("Seconds a claimed run stays claimed without a renewal: a killed worker's runs "
              "are taken over after this [env ADF_LEASE_SECONDS, adf.toml lease_seconds; "
              "default: 10].")


@contextmanager
def open_store(*, upgrade: bool | None = None,
               lease_seconds: float | None = None) -> Iterator[FlowStore]:
    """The flow store for a command, once its database answers (see :func:`connect_store`);
    closed after the block. Errors reach the one handler of :mod:`._errors`."""
    store = connect_store(upgrade=upgrade, lease_seconds=lease_seconds)
    try:
        yield store
    finally:
        store.close()


def connect_store(url: str | None = None, *, upgrade: bool | None = None,
                  lease_seconds: float | None = None) -> FlowStore:
    """The flow store at ``url`` (default: ``ADF_DATABASE_URL``), its database reached.

    A database that does not answer is retried for ``store_connect_timeout`` seconds
    (``ADF_STORE_CONNECT_TIMEOUT``, default 10), saying so on stderr each time; one that
    does not exist or refuses the credentials is an error at once. ``upgrade``: apply
    pending migrations (default: for SQLite only, as :class:`FlowStore` does).
    """
    from active_data_flow.runtimes.heartbeat import FlowStore

    store = FlowStore(url, auto_upgrade=False, lease_seconds=lease_seconds)
    try:
        store.wait_reachable(on_retry=lambda reason, pause: click.echo(
            one_line(f"flow store database {store.url} unreachable ({reason}); retrying in "
                     f"{pause:.2g}s…"), err=True))
        if (upgrade if upgrade is not None else store.database.backend == "sqlite") and (
                not store.is_current()):
            store.upgrade()
    except BaseException:
        store.close()
        raise
    return store


def load_code_flows() -> None:
    """Load the code-defined flows (``ADF_FLOWS``) before a command runs any: a flow that
    cannot be loaded is a mistake to fix first, reported as one line per module.

    Raises:
        ConfigurationMistake: the last of the modules that could not be loaded (the others
            are printed before it).
    """
    from active_data_flow.catalog import catalog

    errors = load_errors(catalog.load_defaults(quiet=True).errors)
    for line in errors[:-1]:
        echo_error(line)
    if errors:
        raise ConfigurationMistake(errors[-1])


def load_errors(errors: dict[str, str]) -> list[str]:
    """One line per flow or module that could not be loaded or registered."""
    lines = []
    for where, error in sorted(errors.items()):
        if error.startswith("flow "):  # a flow's own error names it
            lines.append(one_line(f"could not sync {error}"))
        else:
            lines.append(one_line(f"could not load {_shown(where)}: {error}"))
    return lines


def _shown(where: str) -> str:
    """A file path relative to the working directory when it is under it."""
    path = Path(where)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return where
    return where


def styled(status: str | None) -> str:
    """A status word in its colour."""
    if not status:
        return "[dim]-[/dim]"
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def when(moment: datetime | None) -> str:
    """A timestamp relative to now (``in 4m``, ``2h ago``, ``now``), in UTC."""
    if moment is None:
        return "[dim]-[/dim]"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - datetime.now(UTC)).total_seconds()
    span = abs(seconds)
    if span < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            text = f"{span / size:.0f}{unit}"
            break
    else:
        text = f"{span:.0f}s"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def schedule_text(record: FlowRecord) -> str:
    """The flow's schedule as written in its runtime (``every 300s``, a cron string)."""
    config = record.spec.runtime.config
    if config.get("enabled") is False:
        return "disabled"
    interval = config.get("interval")
    if interval is None:
        return "on demand"
    return str(interval) if isinstance(interval, str) else f"every {interval:g}s"


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0]
    return line if len(line) <= width else line[: width - 1] + "…"


# -- db ---------------------------------------------------------------------------------------
@click.group()
def db() -> None:
    """Manage the flow store's database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply the store's migrations (creates the tables on a new database)."""
    with open_store(upgrade=False) as store:
        before = store.current()
        store.upgrade(revision)
        after = store.current()
    console.print(f"flow store {store.url}: {before or 'empty'} -> [green]{after}[/green]")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert the store's migrations to REVISION (``base`` drops every table)."""
    with open_store(upgrade=False) as store:
        store.downgrade(revision)
        console.print(f"flow store {store.url}: now at {store.current() or 'base'}")


@db.command("current")
def db_current() -> None:
    """Show the store's current migration revision."""
    with open_store(upgrade=False) as store:
        state = "up to date" if store.is_current() else "[yellow]needs adf db upgrade[/yellow]"
        console.print(f"flow store {store.url}: {store.current() or 'empty'} ({state})")


# -- flows ------------------------------------------------------------------------------------
@click.command()
@click.argument("targets", nargs=-1)
@click.option("--prune", is_flag=True, help="Delete code flows that no module defines any more.")
def sync(targets: tuple[str, ...], prune: bool) -> None:
    """Register or update the code-defined flows in the store.

    TARGETS are modules (myapp.flows) or folders/files (app/data_flows); default: ADF_FLOWS,
    else the first of app/data_flows and data_flows that exists.
    Every flow that cannot be loaded or registered is printed, one line each; the exit code
    is then 2 (1 when code flows in the store are missing from the code).
    """
    from active_data_flow.runtimes.heartbeat.engine.sync import sync as sync_flows

    with open_store() as store:
        report = None
        for target in targets or (None,):
            part = sync_flows(store, target, prune=prune, quiet=True)
            report = part if report is None else report
            if report is not part:
                for field in ("created", "updated", "unchanged", "missing", "removed"):
                    getattr(report, field).extend(getattr(part, field))
                report.errors.update(part.errors)
    assert report is not None
    table = Table(title="Sync", title_justify="left", show_header=False)
    for field, style in (("created", "green"), ("updated", "cyan"), ("unchanged", "dim"),
                         ("missing", "red"), ("removed", "yellow")):
        names = sorted(set(getattr(report, field)))
        if names:
            table.add_row(f"[{style}]{field}[/]", ", ".join(names))
    if not table.row_count and not report.errors:
        table.add_row("nothing", "no code-defined flow found (set ADF_FLOWS or pass a target)")
    if table.row_count:
        console.print(table)
    for line in load_errors(report.errors):
        echo_error(line)
    if report.errors:
        sys.exit(2)
    if report.missing:
        sys.exit(1)


@click.command("list")
@click.option("--status", type=click.Choice(["active", "paused"]), help="Only flows in this state.")
@click.option("--search", help="Only flows whose name contains this text.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(0))
def list_flows(status: str | None, search: str | None, limit: int, offset: int) -> None:
    """List the stored flows: status, schedule, next run, last result."""
    with open_store() as store:
        page = store.list_flows(status=status, search=search, offset=offset, limit=limit)
    table = Table(title=f"Flows ({page.total} in {store.url})", title_justify="left")
    for column in ("flow", "status", "schedule", "next run", "last run"):
        table.add_column(column, no_wrap=column != "flow", overflow="fold")
    for column in ("cursor", "last error"):
        table.add_column(column, overflow="fold", ratio=1)
    for f in page.items:
        last = f"{styled(f.last_run_status)} {when(f.last_run_at)}" if f.last_run_status else "-"
        error = f.code_error or (f.last_error if f.last_run_status == "failed" else None)
        table.add_row(
            f"[bold]{f.name}[/bold]" + (" [dim](spec)[/dim]" if f.origin == "spec" else ""),
            styled(f.status), schedule_text(f),
            "[cyan]running[/cyan]" if f.running_run_id else when(f.next_run_at),
            last, format_cursor(f.cursor) if f.cursor is not None else "[dim]-[/dim]",
            f"[red]{_short(error)}[/red]" if error else "",
        )
    console.print(table)
    if page.total > offset + len(page.items):
        console.print(f"[dim]{page.total - offset - len(page.items)} more: use --offset[/dim]")


@click.command()
@click.argument("flow", required=False)
@click.option("--status", type=click.Choice(
    ["pending", "running", "succeeded", "failed", "cancelled"]))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--errors", "show_errors", is_flag=True, help="Print the traceback of failed runs.")
def runs(flow: str | None, status: str | None, limit: int, show_errors: bool) -> None:
    """Show the latest runs of FLOW (default: of every flow), newest first."""
    with open_store() as store:
        if flow is not None:
            store.get_flow(flow)
        page = store.list_runs(flow=flow, status=status, offset=0, limit=limit)
        on_error = {name: store.get_flow(name).spec.on_error
                    for name in {r.flow for r in page.items if r.failed}}
    title = f"Runs of {flow} ({page.total})" if flow else f"Runs of every flow ({page.total})"
    console.print(runs_table(page.items, title=title, show_flow=flow is None,
                             on_error=on_error))
    if show_errors:
        for run in page.items:
            if run.traceback:
                console.rule(f"run {run.id}")
                console.print(run.traceback, highlight=False, markup=False)


def runs_table(items: Any, title: str, *, show_flow: bool = False,
               on_error: Mapping[str, str] | None = None) -> Table:
    """A table of run records (fits 80 columns; errors fold); ``show_flow`` adds a column
    naming each run's flow (for listings of several flows); with each flow's ``on_error``
    (by flow name), failed messages are counted as what became of them ("2 dead-lettered")."""
    from active_data_flow.runtimes.heartbeat.store import failed_note

    table = Table(title=title, title_justify="left")
    if show_flow:
        table.add_column("flow", overflow="fold")
    table.add_column("run", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("trigger", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("read", justify="right", no_wrap=True)
    table.add_column("written", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("error / worker", overflow="fold", ratio=1)
    for r in items:
        note = f"[red]{_short(r.error)}[/red]" if r.error else f"[dim]{r.worker_id or ''}[/dim]"
        if r.skipped:
            note = f"{r.skipped:,} skipped · " + note
        started = when(r.started_at) if r.started_at else f"due {when(r.due_at)}"
        table.add_row(
            *([f"[bold]{r.flow}[/bold]"] if show_flow else []),
            str(r.id), styled(r.status), r.trigger, started,
            f"{r.duration_s:.2f}s" if r.duration_s is not None else "-",
            f"{r.read:,}", f"{r.written:,}",
            f"[red]{failed_note(r.failed, (on_error or {}).get(r.flow))}[/red]"
            if r.failed else "0", note,
        )
    return table


def _set_status(action: Callable[[FlowStore, str], FlowRecord], flow: str, verb: str) -> None:
    with open_store() as store:
        record = action(store, flow)
    console.print(f"{record.name}: {verb} (now {styled(record.status)})")


@click.command()
@click.argument("flow")
def pause(flow: str) -> None:
    """Pause FLOW: heartbeats skip it and its pending runs are cancelled."""
    _set_status(lambda store, name: store.pause(name), flow, "paused")


@click.command()
@click.argument("flow")
def resume(flow: str) -> None:
    """Resume FLOW: it is scheduled again from now."""
    _set_status(lambda store, name: store.resume(name), flow, "resumed")


# -- heartbeats ---------------------------------------------------------------------------------
def beat_text(summary: BeatSummary) -> str:
    """A heartbeat's counts on one line: ``claimed 1, succeeded 1, failed 0 in 0.12s``."""
    counts = (f"claimed {len(summary.claimed)}, succeeded {len(summary.succeeded)}, "
              f"failed {len(summary.failed)}")
    extra = [f"{label} {len(ids)}" for label, ids in (
        ("reclaimed", summary.reclaimed), ("interrupted", summary.interrupted),
        ("lost", summary.lost), ("dispatched", summary.dispatched)) if ids]
    return counts + (f", {', '.join(extra)}" if extra else "") + f" in {summary.duration_s:.2f}s"


def print_beat(summary: BeatSummary) -> None:
    """A heartbeat's summary: what it claimed and how each run ended."""
    style = "red" if summary.failed else "green"
    console.print(f"[{style}]heartbeat[/] {summary.worker_id}: {beat_text(summary)}")
    if summary.runs:
        console.print(beat_table(summary.runs))


def beat_table(items: list[RunRecord]) -> Table:
    """One row per run a heartbeat executed."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("flow", "run", "status", "read", "written", "failed", "took", "error"):
        table.add_column(column, justify="right" if column in ("run", "read", "written",
                                                               "failed", "took") else "left")
    for r in items:
        table.add_row(r.flow, str(r.id), styled(r.status), f"{r.read:,}", f"{r.written:,}",
                      f"[red]{r.failed:,}[/red]" if r.failed else "0",
                      f"{r.duration_s:.2f}s" if r.duration_s is not None else "-",
                      f"[red]{_short(r.error, 50)}[/red]" if r.error else "")
    return table


@click.command()
@click.option("--limit", type=click.IntRange(1), help="Claim at most this many due runs.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Runs executed at once (threads).")
@click.option("--lease-seconds", type=click.FloatRange(0.5, 86_400), help=LEASE_HELP)
def heartbeat(limit: int | None, concurrency: int, lease_seconds: float | None) -> None:
    """Run one heartbeat: claim every due flow, run it, schedule the next run.

    Safe to call from several processes or machines at once (cron, containers): each due
    run is claimed exactly once. On SIGTERM or Ctrl-C, running runs stop at their next
    checkpoint and go back to pending. Exits 1 when a run failed.
    """
    from active_data_flow.cli._logs import outcomes_printed
    from active_data_flow.runtimes.heartbeat import beat
    from active_data_flow.runtimes.heartbeat.engine.worker import stopping_on_signals

    outcomes_printed()
    load_code_flows()
    with open_store(lease_seconds=lease_seconds) as store, \
            stopping_on_signals("adf heartbeat") as stop:
        summary = beat(store, limit=limit, concurrency=concurrency, stop=stop)
    print_beat(summary)
    sys.exit(summary.exit_code)


@click.command()
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.05),
              help="Seconds between heartbeats.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Runs executed at once within a beat.")
@click.option("--shutdown-timeout", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds a stop (SIGTERM, Ctrl-C) waits for running runs to checkpoint.")
@click.option("--quiet", is_flag=True, help="Log only warnings and errors (failed runs).")
@click.option("--lease-seconds", type=click.FloatRange(0.5, 86_400), help=LEASE_HELP)
def worker(interval: float, concurrency: int, shutdown_timeout: float, quiet: bool,
           lease_seconds: float | None) -> None:
    """Beat every INTERVAL seconds until SIGTERM or Ctrl-C (for hosts without cron).

    Logs (to stderr, with timestamps; see --log-format) each run it starts and ends and
    each beat that did something; a beat with nothing to do is logged at debug level (-vv).
    On a stop signal, running runs finish their current batch and go back to pending
    (or succeed), so no run is left running; a second signal is not needed.
    """
    from active_data_flow.cli._logs import long_running
    from active_data_flow.runtimes.heartbeat import Worker

    long_running()
    if quiet:
        logging.getLogger().setLevel(logging.WARNING)

    def on_beat(summary: BeatSummary) -> None:
        busy = summary.claimed or summary.reclaimed or summary.failed or summary.lost
        level = (logging.WARNING if summary.failed else logging.INFO) if busy else logging.DEBUG
        log.log(level, "heartbeat %s: %s", summary.worker_id, beat_text(summary),
                extra={"action": "beat"})

    load_code_flows()
    with open_store(lease_seconds=lease_seconds) as store:
        loop = Worker(store, interval=interval, concurrency=concurrency,
                      shutdown_timeout=shutdown_timeout, on_beat=on_beat)
        log.info("worker %s beating every %ss on %s (Ctrl-C to stop)", loop.worker_id,
                 f"{interval:g}", store.url, extra={"action": "worker_start"})
        clean = loop.run(install_signal_handlers=True)
    log.log(logging.INFO if clean else logging.WARNING, "worker stopped after %d beat(s)%s",
            loop.beats, "" if clean else " (runs still active at the timeout)",
            extra={"action": "worker_stop"})
    sys.exit(0 if clean else 1)
