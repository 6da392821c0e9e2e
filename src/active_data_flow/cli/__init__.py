"""The ``adf`` command line.

Core commands live here; integrations and third-party plugins add theirs through the
``active_data_flow.commands`` entry-point group (the object is a click command). Commands
are imported only when invoked (or listed by ``--help``), so ``adf run`` never pays for the
web or Celery layers.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

import click

from active_data_flow import __version__

__all__ = ["main"]

COMMAND_GROUP = "active_data_flow.commands"

# name -> "module:attribute" for the core's own commands.
_BUILTIN: dict[str, str] = {
    "run": "active_data_flow.cli.run:run",
    "connectors": "active_data_flow.cli.info:connectors",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use; every error of the
    library a command lets through becomes one line and an exit code here
    (:mod:`._errors`)."""

    def invoke(self, ctx: click.Context) -> Any:
        from active_data_flow.errors import ActiveDataFlowError

        try:
            return super().invoke(ctx)
        except ActiveDataFlowError as exc:
            from active_data_flow.cli._errors import command_error

            raise command_error(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(_BUILTIN) | {ep.name for ep in metadata.entry_points(group=COMMAND_GROUP)}
        return sorted(names | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = _BUILTIN.get(cmd_name)
        try:
            if target is not None:
                module, _, attr = target.partition(":")
                command = getattr(importlib.import_module(module), attr)
            else:
                eps = metadata.entry_points(group=COMMAND_GROUP, name=cmd_name)
                if not eps:
                    return None
                command = next(iter(eps)).load()
        except ImportError as exc:
            return _unavailable(cmd_name, exc)
        if not isinstance(command, click.Command):
            return None
        self.commands[cmd_name] = command
        return command


def _unavailable(name: str, exc: ImportError) -> click.Command:
    """A stand-in for a command whose extra is not installed: it explains, and fails."""

    @click.command(name, help=f"(unavailable: {exc})", context_settings={
        "ignore_unknown_options": True, "allow_extra_args": True})
    def stub(**_: Any) -> None:
        raise click.ClickException(
            f"'adf {name}' needs an optional dependency that is not installed ({exc}); "
            "install it with: pip install 'active-data-flow[all]'"
        )

    return stub


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adf")
@click.option("-v", "--verbose", count=True, help="Log more (-v: info, -vv: debug).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Settings file (default: ./adf.toml if present; env ADF_CONFIG).")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log lines as text or as JSON objects, one per line [env ADF_LOG_FORMAT, "
                   "adf.toml log_format; default: text].")
def main(verbose: int, config_path: str | None, log_format: str | None) -> None:
    """ActiveDataFlow: run, schedule and monitor data flows.

    \b
    Examples:
      adf run myapp.flows:ExportUsers     run a flow class now, with a progress bar
      adf init                            adf.toml, a flows folder and a migrated store
      adf sync                            register the code-defined flows in the store
      adf heartbeat                       run every due flow once (call it from cron)
      adf list / adf runs [FLOW]          what the flows did
      adf trigger FLOW / adf cursor FLOW  run a stored flow soon; see or move its cursor
      adf dead-letters FLOW               messages a flow could not handle (replay, discard)
      adf serve                           the web engine

    \b
    Environment:
      ADF_LOG_LEVEL=DEBUG|INFO|WARNING    log level (overrides -v)
      ADF_LOG_FORMAT=text|json            log format (like --log-format)
      _ADF_COMPLETE=bash_source adf       prints the shell completion script (also
                                          zsh_source, fish_source)
    """
    from active_data_flow.cli._logs import setup_logging
    from active_data_flow.cli.config import load_project_config

    load_project_config(config_path)
    setup_logging(verbose, log_format)
