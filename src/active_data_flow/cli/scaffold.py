"""``adf init`` and ``adf new flow``: the seed's install and flow generators."""

from __future__ import annotations

import keyword
import os
import re
from pathlib import Path

import click

from active_data_flow.cli._render import console
from active_data_flow.cli.config import CONFIG_FILE
from active_data_flow.flow import snake_case

__all__ = ["init", "new"]

FLOW_TEMPLATE = '''\
"""{title}: a data flow. Fill in the source, the sink and the transform.

1. Register it:         adf sync         (heartbeats then run it on its schedule)
2. Run it now:          adf run {name}
   (or, without the flow store: adf run {path}:{class_name})
Docs:                   https://github.com/active-data-flow/active-data-flow-python/tree/main/docs
"""

from __future__ import annotations

from active_data_flow import DataFlow, Message
from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource
from active_data_flow.runtimes.heartbeat import Heartbeat

# For database tables (pip install "active-data-flow[sqlalchemy]"):
# from active_data_flow.connectors.sqlalchemy import SqlAlchemySink, SqlAlchemySource


class {class_name}(DataFlow):
    # Where messages come from. Every run resumes after the last checkpointed position.
    source = JsonLinesSource(path="data/{name}.jsonl")

    # Where records go (or `sinks = [...]` for several).
    sink = JsonLinesSink(path="out/{name}.jsonl")

    # When it runs: every 5 minutes on the heartbeat (seconds or a cron string such as
    # "*/5 * * * *"); a checkpoint after every batch_size records or batch_seconds.
    runtime = Heartbeat(interval=300, batch_size=10_000, batch_seconds=5)

    # What a failing transform does: "fail" the run, "skip" the message, or
    # "dead_letter" it (set `dead_letter_sink`, e.g. {{"type": "dead_letters"}}).
    on_error = "fail"

    def transform(self, message: Message) -> dict[str, object] | None:
        # Return a dict (or Message) to write, None to drop the message, or a list to fan out.
        return dict(message)
'''

EXAMPLE_FLOW = '''\
"""An example flow written by `adf init`: greets three people into out/hello.jsonl."""

from __future__ import annotations

from active_data_flow import DataFlow, Message
from active_data_flow.connectors.jsonl import JsonLinesSink
from active_data_flow.connectors.memory import MemorySource
from active_data_flow.runtimes.heartbeat import Heartbeat


class HelloFlow(DataFlow):
    source = MemorySource(records=[{"name": "Ada"}, {"name": "Grace"}, {"name": "Barbara"}])
    sink = JsonLinesSink(path="out/hello.jsonl")
    runtime = Heartbeat(interval=60)

    def transform(self, message: Message) -> dict[str, object]:
        return {"greeting": f"Hello, {message['name']}!"}
'''

CONFIG_TEMPLATE = '''\
# ActiveDataFlow settings, read by the `adf` command in this folder.
# The environment variables in the comments override them.

# The flow store: flows, runs, cursors, dead letters (ADF_DATABASE_URL).
database_url = "{database_url}"

# Where the code-defined flows live: folders or modules, comma-separated (ADF_FLOWS).
flows = "{flows}"
'''


def _write(path: Path, text: str, force: bool) -> bool:
    if path.exists() and not force:
        console.print(f"  [yellow]exists[/yellow]  {path} (use --force to overwrite)")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    console.print(f"  [green]create[/green]  {path}")
    return True


@click.command()
@click.option("--database", "database_url", default="sqlite:///active_data_flow.db",
              show_default=True, help="SQLAlchemy URL of the flow store.")
@click.option("--flows", "flows_folder", default="data_flows", show_default=True,
              help="Folder for the code-defined flows.")
@click.option("--example/--no-example", default=True, show_default=True,
              help="Write an example flow into the folder.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(database_url: str, flows_folder: str, example: bool, force: bool) -> None:
    """Set up ActiveDataFlow in this folder: adf.toml, a flows folder, a migrated store."""
    from active_data_flow.runtimes.heartbeat import FlowStore, sync

    console.print("[bold]Setting up ActiveDataFlow[/bold]")
    _write(Path(CONFIG_FILE), CONFIG_TEMPLATE.format(database_url=database_url,
                                                      flows=flows_folder), force)
    folder = Path(flows_folder)
    folder.mkdir(parents=True, exist_ok=True)
    if example:
        _write(folder / "hello_flow.py", EXAMPLE_FLOW, force)
    store = FlowStore(database_url, auto_upgrade=False)
    try:
        store.wait_reachable()
        store.upgrade()
        console.print(f"  [green]migrate[/green] {store.url} ({store.current()})")
        report = sync(store, str(folder))
    finally:
        store.close()
    if report.created:
        console.print(f"  [green]sync[/green]    {', '.join(report.created)}")
    console.print("\nNext: [bold]adf new flow my_flow[/bold], then [bold]adf sync[/bold] and "
                  "[bold]adf worker[/bold] (or call [bold]adf heartbeat[/bold] from cron).")


@click.group()
def new() -> None:
    """Generate files (``adf new flow NAME``)."""


@new.command("flow")
@click.argument("name")
@click.option("--folder", help="Where to write it (default: ADF_FLOWS, else data_flows).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def new_flow(name: str, folder: str | None, force: bool) -> None:
    """Write a commented flow file for NAME (snake_case or CamelCase)."""
    module = snake_case(re.sub(r"[^0-9A-Za-z_]", "_", name)).strip("_")
    if not module or not module.isidentifier() or keyword.iskeyword(module):
        raise click.BadParameter(f"{name!r} does not make a Python module name", param_hint="NAME")
    class_name = "".join(part.capitalize() for part in module.split("_"))
    target = Path(folder or _default_folder())
    path = target / f"{module}.py"
    title = module.replace("_", " ").capitalize()
    shown = _relative(path)
    text = FLOW_TEMPLATE.format(title=title, name=module, class_name=class_name,
                                path=shown.as_posix())
    if not _write(path, text, force):
        raise SystemExit(1)
    steps = [("adf sync", "register it in the flow store"),
             (f"adf run {module}", "run it now (recorded, like a scheduled run)"),
             ("adf worker", "run it on its schedule")]
    width = max(len(command) for command, _ in steps)
    console.print(f"flow [bold]{module}[/bold] ({class_name}): edit {shown}, then",
                  highlight=False)
    for number, (command, what) in enumerate(steps, 1):
        console.print(f"  {number}. [bold]{command}[/bold]{' ' * (width - len(command))}   {what}",
                      highlight=False)


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it (shorter to type)."""
    try:
        relative = Path(os.path.relpath(path))
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.parts[:1] == ("..",) else relative


def _default_folder() -> str:
    for entry in os.environ.get("ADF_FLOWS", "").split(","):
        entry = entry.strip()
        if entry and ("/" in entry or os.sep in entry or Path(entry).is_dir()):
            return entry
    for candidate in ("app/data_flows", "data_flows"):
        if Path(candidate).is_dir():
            return candidate
    return "data_flows"
