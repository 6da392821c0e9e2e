"""The one place where an error reaching the ``adf`` command line becomes one line and an
exit code (every command, plugins' included, goes through :func:`handled`).

Exit codes:

* ``2``: a mistake to fix in the configuration or the code: a bad option or flow
  definition (:class:`~active_data_flow.errors.ConfigurationError`), a flow that cannot be
  loaded, a store database that does not exist or refuses the credentials, a store that
  needs ``adf db upgrade``.
* ``1``: everything else that failed: a run, a store database that stayed unreachable for
  the time allowed (``store_connect_timeout``).

The message is masked (no password of a database URL appears) and printed on one line as
``Error: ...``; no traceback (``-vv`` logs it at DEBUG for a bug report).
"""

from __future__ import annotations

import logging
import sys

import click

from active_data_flow.errors import ActiveDataFlowError, ConfigurationError
from active_data_flow.masking import mask_text

__all__ = ["CONFIG_ERROR", "FAILED", "CommandError", "ConfigurationMistake", "command_error",
           "echo_error", "one_line"]

log = logging.getLogger("active_data_flow.cli")

#: Exit code of a configuration mistake.
CONFIG_ERROR = 2
#: Exit code of a failure (a run, an unreachable store).
FAILED = 1


class CommandError(click.ClickException):
    """An error shown as ``Error: <one line>``; exit code 1."""

    exit_code = FAILED


class ConfigurationMistake(CommandError):
    """A mistake in the configuration or the code; exit code 2."""

    exit_code = CONFIG_ERROR


def command_error(exc: ActiveDataFlowError) -> CommandError:
    """The one-line error and exit code for ``exc`` (see the module docs)."""
    log.debug("command failed", exc_info=exc)
    text = one_line(str(exc) or type(exc).__name__)
    return ConfigurationMistake(text) if _is_mistake(exc) else CommandError(text)


def echo_error(text: str) -> None:
    """Print ``Error: <text on one line, masked>`` on stderr (for commands that report
    several errors, such as ``adf sync``, before they exit)."""
    click.echo(f"Error: {one_line(text)}", err=True)


def one_line(text: str) -> str:
    """``text`` masked (no database password) and on one line."""
    return " ".join(mask_text(text).split())


def _is_mistake(exc: ActiveDataFlowError) -> bool:
    if isinstance(exc, ConfigurationError):
        return True
    # The store's "run adf db upgrade" (its module is loaded if it raised it).
    records = sys.modules.get("active_data_flow.runtimes.heartbeat.store.records")
    return records is not None and isinstance(exc, records.StoreNotMigrated)
