"""Keep the reporting table ``paid_orders`` in step with the shop's ``orders``.

Incremental: the source reads only orders changed since the last run (by ``updated_at``,
then ``id``, so rows sharing a timestamp are never skipped), and the sink upserts, so an
order paid later updates its row instead of adding a second one.
"""

from __future__ import annotations

import datetime as dt

from shop import Order, PaidOrder

from active_data_flow import DataFlow, Message
from active_data_flow.connectors.sqlalchemy import SqlAlchemySink, SqlAlchemySource
from active_data_flow.runtimes.heartbeat import Heartbeat

EUR_PER_USD = 0.92


class SyncPaidOrders(DataFlow):
    name = "sync_paid_orders"
    source = SqlAlchemySource(model=Order, database="shop", cursor_column=["updated_at", "id"])
    sink = SqlAlchemySink(model=PaidOrder, database="shop", upsert=True)
    runtime = Heartbeat(interval=60, batch_size=2000)

    def transform(self, message: Message) -> dict[str, object] | None:
        if message["status"] != "paid":
            return None
        euros = round(message["amount_cents"] / 100 * EUR_PER_USD, 2)
        return {
            "order_id": message["id"],
            "customer": message["customer"],
            "country": message["country"],
            "amount_eur": euros,
            "size": "large" if euros >= 1000 else "small",
            "synced_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }
