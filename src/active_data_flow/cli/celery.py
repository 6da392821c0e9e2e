"""``adf celery-worker``: a Celery worker that executes flows dispatched to the Celery runtime."""

from __future__ import annotations

import os
import socket

import click

from active_data_flow.errors import ConfigurationError

__all__ = ["celery_worker"]


@click.command("celery-worker")
@click.option("--broker", envvar="ADF_CELERY_BROKER_URL", metavar="URL",
              help="Redis or RabbitMQ URL  [env: ADF_CELERY_BROKER_URL]")
@click.option("--database", envvar="ADF_DATABASE_URL", metavar="URL",
              help="The flow store's database  [env: ADF_DATABASE_URL]")
@click.option("--flows", envvar="ADF_FLOWS", metavar="TARGETS",
              help="Modules or folders defining the application's code flows, comma-separated "
                   "[env: ADF_FLOWS]")
@click.option("-Q", "--queues", metavar="NAMES",
              help="Queues to consume, comma-separated (default: active_data_flow).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1),
              help="Worker processes (default: one per CPU).")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]),
              default="prefork", show_default=True, help="Celery execution pool.")
@click.option("-n", "--hostname", metavar="NAME",
              help="Node name shown on the runs it executes (default: adf@<host>).")
@click.option("--visibility-timeout", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="Redis: redeliver unacknowledged tasks after this.")
@click.option("--restore-interval", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="Redis: sweep for such tasks this often.")
@click.option("--lease-seconds", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="A partition's lease in the store.")
@click.option("-l", "--loglevel", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def celery_worker(
    broker: str | None, database: str | None, flows: str | None, queues: str | None,
    concurrency: int | None, pool: str, hostname: str | None,
    visibility_timeout: float | None, restore_interval: float | None,
    lease_seconds: float | None, loglevel: str,
) -> None:
    """Run a Celery worker for flows whose runtime is `celery`.

    It splits dispatched runs into partitions and executes them, recording every run and
    partition in the flow store. The broker must keep tasks until they finish: the worker
    refuses to start unless late acknowledgement and reject-on-worker-lost are on (they
    are, unless a host's Celery configuration turned them off).

    \b
    Example:
      ADF_DATABASE_URL=postgresql+psycopg://app@db/app \\
      adf celery-worker --broker redis://broker:6379/0 --flows myapp.flows -c 4 -Q etl
    """
    from active_data_flow.runtimes.celery.app import create_app, set_default_app
    from active_data_flow.runtimes.celery.settings import CelerySettings, check_app

    try:
        settings = CelerySettings.build(
            broker_url=broker, store_url=database, visibility_timeout=visibility_timeout,
            restore_interval=restore_interval, lease_seconds=lease_seconds)
        app = create_app(settings)
        check_app(app)
        _check_store(settings.store_url)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    if flows:
        os.environ["ADF_FLOWS"] = flows
        _load_flows(flows)
    set_default_app(app)
    argv = ["worker", f"--loglevel={loglevel.upper()}", f"--pool={pool}",
            f"--hostname={hostname or 'adf@' + socket.gethostname()}",
            "--without-gossip", "--without-mingle"]
    if queues:
        argv.append(f"--queues={queues}")
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


def _check_store(url: str | None) -> None:
    from active_data_flow.runtimes.heartbeat.store import FlowStore

    store = FlowStore(url, auto_upgrade=False)
    try:
        if not store.is_current():
            raise click.ClickException(
                f"the flow store at {store.url} is not migrated to the current schema; "
                "run `adf db upgrade` first")
    finally:
        store.close()


def _load_flows(targets: str) -> None:
    from active_data_flow.catalog import catalog

    result = catalog.load(*(t.strip() for t in targets.split(",") if t.strip()), quiet=True)
    for where, why in result.errors.items():
        click.echo(f"warning: cannot load flows from {where}: {why}", err=True)
