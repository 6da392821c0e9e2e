"""``adf serve``: run the web engine on its own, with uvicorn.

Security is on by default: the command refuses to start without credentials
(``ADF_WEB_USER`` and ``ADF_WEB_PASSWORD``, checked with HTTP Basic authentication) unless
``--insecure-no-auth`` says otherwise, which is logged as a warning.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from fastapi import FastAPI

    from active_data_flow.runtimes.heartbeat import Worker
    from active_data_flow.web import AuthHook, WebSettings

__all__ = ["serve"]

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ADF_WEB_HOST",
              help="Interface to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              envvar="ADF_WEB_PORT", help="Port to listen on (0: any free port).")
@click.option("--database-url", envvar="ADF_DATABASE_URL", metavar="URL",
              help="The flow store [env: ADF_DATABASE_URL; default: ./active_data_flow.db].")
@click.option("--flows", "flow_targets", multiple=True, metavar="MODULE|PATH",
              help="Load and sync code-defined flows from here (repeatable) "
                   "[default: ADF_FLOWS, else ./app/data_flows or ./data_flows].")
@click.option("--sync/--no-sync", default=True, show_default=True,
              help="Register the code-defined flows in the store at start.")
@click.option("--upgrade/--no-upgrade", default=True, show_default=True,
              help="Apply the store's pending migrations at start.")
@click.option("--heartbeat-every", type=click.FloatRange(min=0.5), metavar="SECONDS",
              envvar="ADF_SERVE_HEARTBEAT",
              help="Also beat every SECONDS in this process (no cron needed).")
@click.option("--root-path", default="", envvar="ADF_WEB_ROOT_PATH",
              help="URL prefix when served behind a proxy under a sub-path.")
@click.option("--insecure-no-auth", is_flag=True,
              help="Serve WITHOUT authentication (trusted networks only).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(
    host: str, port: int, database_url: str | None, flow_targets: tuple[str, ...], sync: bool,
    upgrade: bool, heartbeat_every: float | None, root_path: str, insecure_no_auth: bool,
    log_level: str,
) -> None:
    """Serve the web engine: dashboard, flow pages, JSON API, POST /heartbeat.

    \b
    Credentials come from the environment:
      ADF_WEB_USER, ADF_WEB_PASSWORD   HTTP Basic login for pages and API (required)
      ADF_HEARTBEAT_TOKEN              secret for POST /heartbeat (16+ characters)
      ADF_WEB_SECRET                   CSRF signing key (set it when running several)

    \b
    Example:
      ADF_WEB_USER=admin ADF_WEB_PASSWORD=... ADF_HEARTBEAT_TOKEN=... adf serve --port 8000
      */1 * * * * curl -fsS -X POST -H "Authorization: Bearer $ADF_HEARTBEAT_TOKEN" \\
          http://127.0.0.1:8000/heartbeat
    """
    import uvicorn

    from active_data_flow.cli._logs import long_running

    long_running()
    _mask_logs()
    auth = _auth_from_env(insecure_no_auth)
    app, worker = _build(database_url, flow_targets, sync, upgrade, heartbeat_every, auth, host)
    # log_config=None: uvicorn's lines go through the command's one log handler (timestamps,
    # --log-format json, masking) instead of uvicorn's own.
    config = uvicorn.Config(app, host=host, port=port, root_path=root_path, log_level=log_level,
                            log_config=None, proxy_headers=True, server_header=False,
                            lifespan="on")
    _mask_logs()  # again: uvicorn's own loggers (access log included) got handlers above
    server = uvicorn.Server(config)
    if worker is not None:
        worker.start()
    try:
        server.run()
    finally:
        if worker is not None:
            worker.stop()


def _mask_logs() -> None:
    """Mask secrets and escape control characters in every log line this process writes
    (uvicorn's included): one filter on every handler."""
    from active_data_flow.masking import MaskingFilter

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())


def _auth_from_env(insecure_no_auth: bool) -> AuthHook | None:
    from active_data_flow.web import basic_auth

    user = os.environ.get("ADF_WEB_USER", "")
    password = os.environ.get("ADF_WEB_PASSWORD", "")
    if insecure_no_auth:
        if user or password:
            raise click.UsageError("--insecure-no-auth given while ADF_WEB_USER/"
                                   "ADF_WEB_PASSWORD are set; drop one or the other")
        return None
    if not user or not password:
        raise click.UsageError(
            "no credentials: set ADF_WEB_USER and ADF_WEB_PASSWORD (HTTP Basic login for the "
            "pages and the API), or pass --insecure-no-auth to serve without authentication"
        )
    try:
        return basic_auth(user, password)
    except ValueError as exc:
        raise click.UsageError(f"ADF_WEB_PASSWORD: {exc}") from None


def _build(database_url: str | None, flow_targets: tuple[str, ...], sync: bool, upgrade: bool,
           heartbeat_every: float | None, auth: AuthHook | None,
           host: str = "127.0.0.1") -> tuple[FastAPI, Worker | None]:
    from active_data_flow.cli._errors import ConfigurationMistake
    from active_data_flow.cli.store import connect_store
    from active_data_flow.runtimes.heartbeat import Worker
    from active_data_flow.runtimes.heartbeat import sync as sync_flows
    from active_data_flow.web import WebSettings, create_app

    settings = _with_allowed_hosts(WebSettings.from_env(), host)
    store = connect_store(database_url, upgrade=upgrade)
    if not store.is_current():
        raise ConfigurationMistake(
            f"the flow store {store.url} is not migrated: run `adf db upgrade` or drop "
            "--no-upgrade")
    if sync:
        reports = ([sync_flows(store, t, quiet=True) for t in flow_targets]
                   or [sync_flows(store, quiet=True)])
        for report in reports:
            for name, error in report.errors.items():
                log.warning("flow %s could not be registered: %s", name, error)
            log.info("flows synced: %d created, %d updated, %d unchanged",
                     len(report.created), len(report.updated), len(report.unchanged))
    if settings.heartbeat_token is None and heartbeat_every is None:
        log.warning("ADF_HEARTBEAT_TOKEN is not set: POST /heartbeat refuses every call; "
                    "nothing runs by itself unless a worker (adf worker) or cron beats")
    app = create_app(store, auth=auth, insecure_no_auth=auth is None, settings=settings)
    worker = Worker(store, interval=heartbeat_every) if heartbeat_every else None
    return app, worker


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _with_allowed_hosts(settings: WebSettings, host: str) -> WebSettings:
    """Unless ADF_WEB_ALLOWED_HOSTS names them, the engine answers to the interface it
    listens on and the loopback names only (a DNS-rebinding page cannot reach it). On a
    wildcard interface the names are unknown: any host is served, with a warning."""
    from dataclasses import replace

    if settings.allowed_hosts:
        return settings
    if host in ("0.0.0.0", "::", ""):
        log.warning("listening on every interface without ADF_WEB_ALLOWED_HOSTS: the engine "
                    "answers to any Host header; set it to the names clients use")
        return settings
    return replace(settings, allowed_hosts=tuple(dict.fromkeys((host, *_LOOPBACK))))

