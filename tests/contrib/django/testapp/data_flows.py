"""The test app's flows, found by ``manage.py adf`` (an installed app's ``data_flows``)."""

from __future__ import annotations

from typing import Any

from active_data_flow import DataFlow
from active_data_flow.contrib.django.connectors import DjangoSink, DjangoSource


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
