"""What the test workers import (``ADF_FLOWS=tests.integration.runtimes.celery.flows``): the
target table's model, the ``data`` database, the ``range`` source, and the scheduler loop the
tests start.

Flows themselves are stored as JSON specs by each test, so that every test chooses its own
sizes and runtime options while workers import this module once.
"""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from active_data_flow.connectors.sqlalchemy import register_database, register_models
from active_data_flow.runtimes.celery.testing import RangeSource

__all__ = ["Base", "Origin", "RangeSource", "Target", "run_scheduler"]

DATA_ENV = "ADF_TEST_DATA_URL"


class Base(DeclarativeBase):
    pass


class Target(Base):
    """Where the test flows upsert their rows."""

    __tablename__ = "celery_target"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    v: Mapped[str]


class Origin(Base):
    """A table the SQL tests split and copy from."""

    __tablename__ = "celery_origin"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    v: Mapped[str]
    at: Mapped[datetime]


register_models(Base)
if os.environ.get(DATA_ENV):
    register_database("data", os.environ[DATA_ENV])


def run_scheduler(interval: float) -> None:
    """A heartbeat loop on ``ADF_DATABASE_URL`` that dispatches Celery flows (until SIGTERM)."""
    from active_data_flow.runtimes.heartbeat import FlowStore, Worker

    store = FlowStore(os.environ["ADF_DATABASE_URL"])
    Worker(store, interval=interval).run()
