"""The flow store: flows, runs, dead letters and heartbeats in a SQL database.

This package holds all of the heartbeat runtime's SQL. :class:`FlowStore` is its one entry
point; its methods come from four parts: flows (:mod:`._flows`), runs (:mod:`._runs`),
health/dead letters (:mod:`._health`) and the parts of partitioned runs (:mod:`._partitions`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy.engine import URL, Connection, Engine

from active_data_flow.runtimes.heartbeat.records import ReplayReport
from active_data_flow.runtimes.heartbeat.store import _schema
from active_data_flow.runtimes.heartbeat.store._base import utcnow
from active_data_flow.runtimes.heartbeat.store._db import (
    DEFAULT_URL,
    Database,
    is_transient_db_error,
    same_database,
)
from active_data_flow.runtimes.heartbeat.store._flows import FlowsMixin
from active_data_flow.runtimes.heartbeat.store._health import HealthMixin, insert_dead_letters
from active_data_flow.runtimes.heartbeat.store._partitions import PartitionsMixin
from active_data_flow.runtimes.heartbeat.store._runs import RunsMixin

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.beat import BackgroundRuns
    from active_data_flow.runtimes.heartbeat.leases import LeaseKeeper

__all__ = ["DEFAULT_URL", "FlowStore", "insert_dead_letters", "is_transient_db_error"]

log = logging.getLogger(__name__)


class FlowStore(FlowsMixin, RunsMixin, HealthMixin, PartitionsMixin):
    """Flows and their runs, in the database at ``url``.

    Args:
        url: a SQLAlchemy URL. Default: ``ADF_DATABASE_URL``, else
            ``sqlite:///active_data_flow.db`` in the working directory.
        engine: an existing engine to use instead (not disposed by :meth:`close`).
        lease_seconds: how long a claimed run stays claimed without a renewal; a run whose
            worker died is reclaimed after this. Renewals happen every ``renew_seconds``
            (default: a quarter of the lease).
        auto_upgrade: apply pending migrations now. Default: yes for SQLite (the embedded
            default), no for server databases (run ``adf db upgrade``, or :meth:`upgrade`).
        retry_seconds: how long transient database failures are retried.
        background_threads: threads executing runs claimed by ``beat(background=True)``.
        clock: a function giving the current aware datetime (tests travel in time with it).

    Example:
        >>> store = FlowStore("sqlite:///flows.db")                    # doctest: +SKIP
        >>> store.create_flow({"name": "copy", "source": {...}, "sink": {...}})  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        lease_seconds: float = 60.0,
        renew_seconds: float | None = None,
        auto_upgrade: bool | None = None,
        retry_seconds: float = 20.0,
        background_threads: int = 4,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if lease_seconds <= 0:
            from active_data_flow.errors import ConfigurationError

            raise ConfigurationError("lease_seconds must be positive", option="lease_seconds")
        self._db = Database(url, engine=engine, retry_seconds=retry_seconds)
        self.lease_seconds = float(lease_seconds)
        self.renew_seconds = float(renew_seconds or lease_seconds / 4)
        self._clock = clock or utcnow
        self._leases: LeaseKeeper | None = None
        self._background: BackgroundRuns | None = None
        self.background_threads = background_threads
        self._aux_lock = threading.Lock()
        auto = auto_upgrade if auto_upgrade is not None else self._db.backend == "sqlite"
        if auto and self.current() != _schema.head_revision():
            self.upgrade()

    # -- the database --------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._db.display_url

    @property
    def engine(self) -> Engine:
        """The store's SQLAlchemy engine."""
        return self._db.engine

    @property
    def database(self) -> Database:
        """The store's database handle (engine plus transaction helpers)."""
        return self._db

    def upgrade(self, revision: str = "heads") -> None:
        """Apply the store's migrations up to ``revision`` (``adf db upgrade``)."""
        _schema.upgrade(self._db, revision)

    def downgrade(self, revision: str) -> None:
        """Revert the store's migrations to ``revision`` (``"base"`` drops the tables)."""
        _schema.downgrade(self._db, revision)

    def current(self) -> str | None:
        """The revision the database is at (``None``: not migrated)."""
        return _schema.current_revision(self._db)

    def is_current(self) -> bool:
        """Whether the database is at the newest revision."""
        return self.current() == _schema.head_revision()

    def shares_database_with(self, handle: Any) -> bool:
        """Whether ``handle`` (a SQLAlchemy Connection or Engine) points at this store's
        database, so writes through it can join the store's rows in one transaction."""
        if isinstance(handle, (Connection, Engine)):
            return same_database(handle.engine.url, self._db.url)
        return False

    # -- run-time helpers ----------------------------------------------------------------
    @property
    def leases(self) -> LeaseKeeper:
        """The thread renewing this process's claims (started on first use)."""
        with self._aux_lock:
            if self._leases is None:
                from active_data_flow.runtimes.heartbeat.leases import LeaseKeeper

                self._leases = LeaseKeeper(self)
            return self._leases

    @property
    def background(self) -> BackgroundRuns:
        """The threads executing runs claimed by ``beat(background=True)``; call
        ``store.background.wait()`` to wait for them, ``shutdown()`` to stop them."""
        with self._aux_lock:
            if self._background is None or self._background.stop.is_set():
                from active_data_flow.runtimes.heartbeat.beat import BackgroundRuns

                self._background = BackgroundRuns(self, self.background_threads)
            return self._background

    def replay_dead_letters(self, flow: str, ids: Iterable[int] | None = None) -> ReplayReport:
        """Run dead letters through the flow's transform and sinks again; mark the ones that
        went through replayed, and record why the others failed again.

        Raises:
            FlowNotFound: no such flow.
            FlowCodeError: the flow's code is not loaded.
        """
        from active_data_flow.runtimes.heartbeat.deadletters import replay

        return replay(self, flow, ids)

    def cursor_lag(self, name: str) -> int | None:
        """How many messages the flow's source holds after its cursor, when the source can
        tell (it implements ``lag(cursor) -> int | None``); else ``None``."""
        from active_data_flow.runtimes.heartbeat.registration import build_flow

        record = self.get_flow(name)
        source = build_flow(record).build_source()
        try:
            lag = getattr(source, "lag", None)
            return None if lag is None else lag(record.cursor)
        finally:
            source.close()

    def close(self) -> None:
        """Stop background runs (gracefully) and lease renewal; release the connections."""
        if self._background is not None:
            self._background.shutdown()
        if self._leases is not None:
            self._leases.close()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FlowStore({self.url!r})"

