"""The shop's flows (``manage.py adf`` finds an installed app's ``data_flows`` module)."""

from typing import Any

from django.conf import settings

from active_data_flow import DataFlow
from active_data_flow.connectors.csv import CsvSink
from active_data_flow.contrib.django.connectors import DjangoSink, DjangoSource
from active_data_flow.runtimes.heartbeat import Heartbeat


class SyncOrderReports(DataFlow):
    """Orders -> order reports, every 10 seconds: only the orders changed since the last
    run (composite cursor), upserted; the cursor commits with the rows (same database)."""

    name = "sync_order_reports"
    source = DjangoSource(model="shop.Order", cursor_column=["updated_at", "id"],
                          includes=["product"])
    sink = DjangoSink(model="shop.OrderReport", upsert=True)
    runtime = Heartbeat(interval=10)

    def transform(self, order: Any) -> dict[str, Any]:
        product = order["product"]
        return {"id": order["id"], "product_name": product["name"],
                "quantity": order["quantity"], "total": product["price"] * order["quantity"],
                "status": order["status"], "updated_at": order["updated_at"]}


class ExportOrders(DataFlow):
    """Orders -> a CSV change log, every minute: each run appends the orders changed since
    the previous one."""

    name = "export_orders"
    source = DjangoSource(model="shop.Order", cursor_column=["updated_at", "id"],
                          select=["id", "product", "quantity", "status", "updated_at"])
    sink = CsvSink(path=settings.EXPORT_DIR / "orders.csv")
    runtime = Heartbeat(interval=60)
