"""``adf inbox-token``: a new token for a flow's ``http_inbox`` source, and its hash."""

from __future__ import annotations

import click

from active_data_flow.runtimes.heartbeat.engine.inbox import hash_token, new_token

__all__ = ["inbox_token"]


@click.command("inbox-token")
@click.option("--token", help="Hash this token instead of making a new one.")
def inbox_token(token: str | None) -> None:
    """Print a new inbox token (give it to the clients that push) and its SHA-256 (put it in
    the http_inbox source's token_sha256 option; only the hash is stored)."""
    if token is None:
        token, digest = new_token()
    else:
        digest = hash_token(token)
    click.echo(f"token:        {token}")
    click.echo(f"token_sha256: {digest}")
