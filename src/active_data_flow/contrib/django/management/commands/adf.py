"""``manage.py adf <verb> ...``: every ``adf`` command, with this project's flows and store.

The flow store is the ``ACTIVE_DATA_FLOW["DATABASE"]`` alias, the flows are each installed
app's ``data_flows`` module (or package) plus ``ACTIVE_DATA_FLOW["FLOWS"]``, and a
configured ``CELERY_APP`` is the app Celery flows are enqueued through::

    python manage.py adf list
    python manage.py adf sync
    python manage.py adf worker
    python manage.py adf run shop.data_flows:CopyOrders
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from active_data_flow.contrib.django import conf


def configure() -> dict[str, str]:
    """Export the project's settings as the ``ADF_*`` variables the ``adf`` command reads;
    returns them."""
    settings = conf.adf_settings()
    values = {
        "ADF_DATABASE_URL": conf.sqlalchemy_url(settings.database).render_as_string(
            hide_password=False),
        "ADF_FLOWS": ",".join(conf.discover_flow_modules()),
    }
    if settings.heartbeat_token:
        values["ADF_HEARTBEAT_TOKEN"] = settings.heartbeat_token
    if settings.lease_seconds is not None:
        values["ADF_LEASE_SECONDS"] = str(settings.lease_seconds)
    os.environ.update(values)
    if settings.celery_app:
        from active_data_flow.contrib.django.celery import load_app

        load_app(settings.celery_app)
    return values


class Command(BaseCommand):
    help = "Run an adf command with this project's flows and flow store (try: adf --help)."

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand everything after ``adf`` to the ``adf`` command line, options included."""
        from active_data_flow.cli import main

        configure()
        main.main(args=argv[2:], prog_name=f"{os.path.basename(argv[0])} adf")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("arguments", nargs="*")

    def handle(self, *args: Any, **options: Any) -> None:
        """``call_command("adf", "list")``: runs without exiting the process."""
        from active_data_flow.cli import main

        configure()
        main.main(args=[*args, *options.get("arguments", [])], prog_name="adf",
                  standalone_mode=False)
