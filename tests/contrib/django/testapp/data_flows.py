"""The test app's flows, found by ``manage.py adf`` (an installed app's ``data_flows``)."""

from __future__ import annotations

from typing import Any

from active_data_flow import DataFlow
from active_data_flow.contrib.django.connectors import DjangoSink, DjangoSource
from tests.contrib.django.testapp.crash import install_from_env


class CopyCustomers(DataFlow):
    """Customers -> report rows: an incremental upsert on a composite cursor."""

    name = "copy_customers"
    source = DjangoSource(model="testapp.Customer", cursor_column=["updated_at", "id"],
                          batch_size=40)
    sink = DjangoSink(model="testapp.ReportCustomer", upsert=True)
    batch_size = 25

    def transform(self, message: Any) -> dict[str, Any]:
        return {"id": message["id"], "email": message["email"].lower(),
                "display_name": message["name"].title(), "visits": message["id"]}


class LogCustomers(DataFlow):
    """Customers -> an append-only log, ten at a time (the crash tests count duplicates)."""

    name = "log_customers"
    source = DjangoSource(model="testapp.Customer", batch_size=10)
    sink = DjangoSink(model="testapp.CopyLog", batch_size=10)
    batch_size = 10

    def transform(self, message: Any) -> dict[str, Any]:
        return {"customer_id": message["id"], "email": message["email"]}


install_from_env()  # the crash tests' injection (inert unless ADF_TEST_DJANGO_CRASH is set)
