"""``settings.ACTIVE_DATA_FLOW``, the flow store's database, and the project's flows.

::

    ACTIVE_DATA_FLOW = {
        "DATABASE": "default",            # the DATABASES alias holding the flow store
        "FLOWS": ["shop.flows"],          # more flow modules (apps' data_flows are found)
        "MODELS": ["shop.*", "crm.Lead"], # models stored specs (web, store) may name
        "HEARTBEAT_TOKEN": "...",         # POST /heartbeat's token (ADF_HEARTBEAT_TOKEN)
        "CELERY_APP": "proj.celery:app",  # the project's Celery app, for the Celery runtime
    }

Every key is optional. The flow store keeps using SQLAlchemy: its URL is built from the
alias's ``DATABASES`` entry (:func:`sqlalchemy_url`), so ``manage.py migrate``, the admin,
``manage.py adf`` and the connectors all see the same tables.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections
from sqlalchemy.engine import URL

from active_data_flow.errors import ConfigurationError

__all__ = ["AdfSettings", "adf_settings", "discover_flow_modules", "flow_store",
           "sqlalchemy_url"]

_KEYS = ("DATABASE", "FLOWS", "MODELS", "HEARTBEAT_TOKEN", "CELERY_APP", "LEASE_SECONDS")

# Django backend vendor -> SQLAlchemy driver
_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


@dataclass(frozen=True)
class AdfSettings:
    """``settings.ACTIVE_DATA_FLOW``, validated."""

    database: str = "default"
    flows: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    heartbeat_token: str | None = None
    celery_app: str | None = None
    lease_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def adf_settings() -> AdfSettings:
    """Read and check ``settings.ACTIVE_DATA_FLOW``.

    Raises:
        ConfigurationError: an unknown key, or a value of the wrong kind.
    """
    raw = getattr(settings, "ACTIVE_DATA_FLOW", None) or {}
    if not isinstance(raw, dict):
        raise ConfigurationError("settings.ACTIVE_DATA_FLOW must be a dict",
                                 option="ACTIVE_DATA_FLOW")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigurationError(
            f"settings.ACTIVE_DATA_FLOW: unknown key {unknown[0]!r} (keys: {', '.join(_KEYS)})",
            option=unknown[0])
    database = raw.get("DATABASE", "default")
    if database not in settings.DATABASES:
        raise ConfigurationError(
            f"settings.ACTIVE_DATA_FLOW['DATABASE']: {database!r} is not a DATABASES alias "
            f"(aliases: {', '.join(settings.DATABASES)})", option="DATABASE")
    lists = {}
    for key in ("FLOWS", "MODELS"):
        value = raw.get(key, ())
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(
                f"settings.ACTIVE_DATA_FLOW[{key!r}] must be a list of strings", option=key)
        lists[key] = tuple(value)
    lease = raw.get("LEASE_SECONDS")
    return AdfSettings(
        database=database, flows=lists["FLOWS"], models=lists["MODELS"],
        heartbeat_token=raw.get("HEARTBEAT_TOKEN"), celery_app=raw.get("CELERY_APP"),
        lease_seconds=float(lease) if lease is not None else None,
    )


def sqlalchemy_url(alias: str | None = None) -> URL:
    """The SQLAlchemy URL of a ``DATABASES`` alias (default: the flow store's).

    SQLite, PostgreSQL (psycopg 3) and MariaDB/MySQL (PyMySQL) are supported.

    Raises:
        ConfigurationError: an unknown alias, an in-memory SQLite database or another backend.
    """
    alias = alias or adf_settings().database
    if alias not in connections:
        raise ConfigurationError(f"{alias!r} is not a DATABASES alias", option="database")
    connection = connections[alias]
    conf = connection.settings_dict
    vendor = connection.vendor
    name = str(conf.get("NAME") or "")
    if vendor == "sqlite":
        if not name or name == ":memory:" or name.startswith("file::memory:"):
            raise ConfigurationError(
                f"DATABASES[{alias!r}] is an in-memory SQLite database, which other "
                "connections cannot see; use a file", option="database")
        return URL.create("sqlite", database=name)
    driver = _DRIVERS.get(vendor)
    if driver is None:
        raise ConfigurationError(
            f"DATABASES[{alias!r}] uses the {vendor!r} backend; the flow store supports "
            "sqlite, postgresql and mysql", option="database")
    port = conf.get("PORT")
    query = {"charset": "utf8mb4"} if vendor == "mysql" else {}
    options = conf.get("OPTIONS") or {}
    if vendor == "postgresql" and isinstance(options.get("sslmode"), str):
        query["sslmode"] = options["sslmode"]
    return URL.create(
        driver, username=conf.get("USER") or None, password=conf.get("PASSWORD") or None,
        host=conf.get("HOST") or None, port=int(port) if port else None, database=name,
        query=query,
    )


def flow_store(**options: Any) -> Any:
    """A :class:`~active_data_flow.runtimes.heartbeat.store.FlowStore` on the flow store's
    alias (migrate it with ``manage.py migrate``)."""
    from active_data_flow.runtimes.heartbeat.store import FlowStore

    conf = adf_settings()
    options.setdefault("auto_upgrade", False)
    if conf.lease_seconds is not None:
        options.setdefault("lease_seconds", conf.lease_seconds)
    return FlowStore(sqlalchemy_url(conf.database), **options)


def discover_flow_modules() -> list[str]:
    """The flow modules of the project: each installed app's ``data_flows`` module or
    package, then ``ACTIVE_DATA_FLOW["FLOWS"]``."""
    found: list[str] = []
    for app in apps.get_app_configs():
        name = f"{app.name}.data_flows"
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            found.append(name)
    for module in adf_settings().flows:
        if module not in found:
            found.append(module)
    return found
