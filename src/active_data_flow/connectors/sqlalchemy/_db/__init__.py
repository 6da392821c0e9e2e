"""The one database layer: engines, the engine cache, retries, transactions, SQLite set-up.

The SQLAlchemy connectors and the flow store make their engines and run their transactions
here. What it owns:

* **Transient errors** (:func:`is_transient_db_error`): which driver errors are worth
  retrying, and what a connector reports instead of a driver error (:func:`translate`).
* **Engines** (:func:`make_engine`, :func:`engine_for`): made per *profile*. ``"connector"``
  engines keep SQLite's ``synchronous=FULL``; ``"store"`` engines add what the flow store's
  claims need (``READ COMMITTED`` on servers, foreign keys and ``synchronous=NORMAL`` on
  SQLite). Every engine pings pooled connections on checkout (``pool_pre_ping``), so the
  first query after a database restart gets a fresh connection, and a forked process drops
  the pools it inherited. :func:`engine_for` keeps one engine per (URL, profile) and process.
* **SQLite**: files are switched to write-ahead logging (readers no longer block the writer,
  and a commit costs one fsync instead of four); transactions begin explicitly (the driver
  is put in autocommit and this layer emits ``BEGIN``), so savepoints work and a write
  transaction can take the write lock up front with ``BEGIN IMMEDIATE``
  (:meth:`Database.write`, :func:`begin_immediate`): concurrent writers queue behind the
  busy timeout instead of failing to upgrade a read lock ("database is locked").
* **Databases** (:class:`Database`): an engine with its name, retry policy and transaction
  helpers; :meth:`Database.transact` retries a whole transaction for a bounded time.
* **Named databases** (:func:`register_database`) for the connectors' ``database`` option.
* **Masking**: every message and log line that names a database hides its password
  (through :mod:`active_data_flow.masking`).

Why connector engines stay at ``synchronous=FULL`` on SQLite: a sink's commit is the
durability point of a batch, and a flow's cursor may be committed in *another* database
right after it. With ``NORMAL`` in WAL mode a power loss can undo the last commits, and a
cursor that survived in the other database would then cover rows that are gone. The flow
store can afford ``NORMAL``: what a power loss takes from it is its last commits, so a
cursor goes back and a batch is read again (at least once), never skipped.
"""

from __future__ import annotations

from active_data_flow.connectors.sqlalchemy._db._base import (
    DEFAULT_NAME,
    DEFAULT_URL,
    Profile,
    Role,
)
from active_data_flow.connectors.sqlalchemy._db.database import (
    Database,
    RetryPolicy,
    begin_immediate,
    release,
)
from active_data_flow.connectors.sqlalchemy._db.engines import (
    configure_sqlite,
    make_engine,
)
from active_data_flow.connectors.sqlalchemy._db.errors import (
    DatabaseUnavailable,
    describe,
    is_transient_db_error,
    translate,
)
from active_data_flow.connectors.sqlalchemy._db.registry import (
    cached_database,
    check_reference,
    dispose_engines,
    engine_for,
    register_database,
    registered_databases,
    registered_name,
    registered_name_of_url,
    resolve_database,
    unregister_database,
)
from active_data_flow.connectors.sqlalchemy._db.urls import (
    resolve_url,
    same_database,
)

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_URL",
    "Database",
    "DatabaseUnavailable",
    "Profile",
    "RetryPolicy",
    "Role",
    "begin_immediate",
    "cached_database",
    "check_reference",
    "configure_sqlite",
    "describe",
    "dispose_engines",
    "engine_for",
    "is_transient_db_error",
    "make_engine",
    "register_database",
    "registered_databases",
    "registered_name",
    "registered_name_of_url",
    "release",
    "resolve_database",
    "resolve_url",
    "same_database",
    "translate",
    "unregister_database",
]

