"""Export large paid orders to a CSV file for the finance team, every five minutes.

Incremental on ``synced_at``: an order that becomes large and paid later is exported then.
"""

from __future__ import annotations

from shop import DEMO_DIR, PaidOrder

from active_data_flow import DataFlow, Message
from active_data_flow.connectors.csv import CsvSink
from active_data_flow.connectors.sqlalchemy import SqlAlchemySource
from active_data_flow.runtimes.heartbeat import Heartbeat


class ExportLargeOrders(DataFlow):
    name = "export_large_orders"
    source = SqlAlchemySource(model=PaidOrder, database="shop", where={"size": "large"},
                              cursor_column=["synced_at", "order_id"])
    sink = CsvSink(path=DEMO_DIR / "large_orders.csv",
                   fields=["order_id", "country", "amount_eur"])
    runtime = Heartbeat(interval="*/5 * * * *")

    def transform(self, message: Message) -> dict[str, object]:
        return {k: message[k] for k in ("order_id", "country", "amount_eur")}
