"""The demo's flows: ordinary DataFlow classes, as an application would write them."""

from __future__ import annotations

from pathlib import Path

from active_data_flow import DataFlow, Message
from active_data_flow.connectors.csv import CsvSink
from active_data_flow.connectors.jsonl import JsonLinesSource

OUT = Path.cwd() / "demo-output"
ORDERS = OUT / "orders.jsonl"

EUR_PER_USD = 0.92


class ExportLargeOrders(DataFlow):
    """Paid orders worth more than 1,000.00, converted to EUR, as CSV."""

    source = JsonLinesSource(path=ORDERS)
    sink = CsvSink(path=OUT / "large_orders.csv",
                   fields=["id", "customer", "country", "amount_eur"])
    on_error = "skip"

    def transform(self, message: Message) -> dict[str, object] | None:
        if message["status"] != "paid" or message["amount_cents"] < 100_000:
            return None
        return {
            "id": message["id"],
            "customer": message["customer"],
            "country": message["country"],
            "amount_eur": round(message["amount_cents"] / 100 * EUR_PER_USD, 2),
        }
