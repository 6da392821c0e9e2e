"""The demo's application: a shop database with orders, and a reporting table.

An application would have these models already; the demo generates the data. (It sits in the
flows folder so that the flows can import it wherever they are loaded.)
"""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from active_data_flow.connectors.sqlalchemy import register_database, register_models

#: Everything the demo writes lives here (``demo-output/`` in the working directory).
DEMO_DIR = Path(os.environ.get("ADF_DEMO_DIR", Path.cwd() / "demo-output")).resolve()
SHOP_URL = f"sqlite:///{DEMO_DIR / 'shop.db'}"
COUNTRIES = ["DE", "FR", "NL", "PL", "SE", "US", "BR", "JP"]
START = dt.datetime(2026, 11, 1, 8, 0, 0)


class Base(DeclarativeBase):
    pass


class Order(Base):
    """An order as the shop records it; ``updated_at`` changes when its status does."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(sa.String(40))
    country: Mapped[str] = mapped_column(sa.String(2))
    amount_cents: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(12))
    updated_at: Mapped[dt.datetime] = mapped_column(index=True)


class PaidOrder(Base):
    """The reporting table the demo's flow maintains: paid orders, in EUR."""

    __tablename__ = "paid_orders"
    order_id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(sa.String(40))
    country: Mapped[str] = mapped_column(sa.String(2))
    amount_eur: Mapped[float]
    size: Mapped[str] = mapped_column(sa.String(6))
    synced_at: Mapped[dt.datetime] = mapped_column(index=True)


# The flows name the database "shop"; specs from the web may use these models by name.
DEMO_DIR.mkdir(parents=True, exist_ok=True)
shop = register_database("shop", SHOP_URL)
register_models(Base, database="shop")


def create_tables() -> None:
    """Create the shop's tables."""
    Base.metadata.create_all(shop)


def add_orders(first_id: int, count: int, seed: int) -> None:
    """Insert ``count`` generated orders starting at ``first_id``."""
    rng = random.Random(seed)
    rows = [
        {
            "id": order_id,
            "customer": f"customer-{rng.randint(1, 2000)}",
            "country": rng.choice(COUNTRIES),
            "amount_cents": rng.randint(100, 250_000),
            "status": rng.choice(["paid", "paid", "paid", "refunded", "pending"]),
            "updated_at": START + dt.timedelta(seconds=order_id),
        }
        for order_id in range(first_id, first_id + count)
    ]
    with shop.begin() as conn:
        conn.execute(sa.insert(Order), rows)


def pay_pending_orders(limit: int) -> int:
    """Mark up to ``limit`` pending orders paid (their ``updated_at`` moves); how many."""
    with shop.begin() as conn:
        ids = conn.scalars(sa.select(Order.id).where(Order.status == "pending")
                           .order_by(Order.id).limit(limit)).all()
        conn.execute(sa.update(Order).where(Order.id.in_(ids)).values(
            status="paid", updated_at=START + dt.timedelta(days=30)))
    return len(ids)


def count(model: type[Base]) -> int:
    """Rows in a model's table."""
    with shop.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(model)) or 0)
