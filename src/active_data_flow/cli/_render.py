"""Rich output shared by commands: progress while a flow runs, a summary table after."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from active_data_flow.formatting import rate
from active_data_flow.runner import RunResult

__all__ = ["console", "err_console", "flow_progress", "format_cursor", "results_table"]

def _width(stream: Any) -> int | None:
    """Terminal width when attached to one; 120 columns for pipes and logs (rich says 80)."""
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return 120


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


@contextmanager
def flow_progress(
    name: str, *, enabled: bool = True
) -> Iterator[Callable[[RunResult], None]]:
    """A progress display for one run; yields the ``on_progress`` callback to pass (a bar
    once the results say how many messages the source holds)."""
    if not enabled:
        yield lambda _result: None
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]{task.description}"),
                          BarColumn(), MofNCompleteColumn()]
    columns += [
        TextColumn("read {task.fields[read]:,}  written {task.fields[written]:,}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(name, total=None, read=0, written=0, rate=rate(0))

        def update(result: RunResult) -> None:
            progress.update(task, total=result.total, completed=result.read, read=result.read,
                            written=result.written, rate=rate(result.rate))

        yield update


def results_table(results: Sequence[RunResult], title: str = "Run summary") -> Table:
    """A summary of run results: one column per run (fits a narrow terminal)."""
    table = Table(title=title, title_justify="left", show_header=len(results) > 1)
    table.add_column("", style="bold")
    for r in results:
        table.add_column(r.flow, justify="right", overflow="fold")
    rows: list[tuple[str, Callable[[RunResult], str]]] = [
        ("flow", lambda r: f"[bold]{r.flow}[/bold]"),
        ("read", lambda r: f"{r.read:,}"),
        ("written", lambda r: f"{r.written:,}"),
        ("skipped", lambda r: f"{r.skipped:,}"),
        ("failed", lambda r: f"[red]{r.failed:,}[/red]" if r.failed else "0"),
        ("duration", lambda r: f"{r.duration_s:.2f} s"),
        ("throughput", lambda r: rate(r.rate)),
        ("cursor", lambda r: format_cursor(r.cursor)),
    ]
    for label, cell in rows[0 if len(results) == 1 else 1:]:
        table.add_row(label, *(cell(r) for r in results))
    return table


def format_cursor(cursor: Any) -> str:
    """A compact, readable rendering of a cursor (``line=12 offset=345``)."""
    if isinstance(cursor, dict):
        return " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in cursor.items())
    return json.dumps(cursor, default=str)
