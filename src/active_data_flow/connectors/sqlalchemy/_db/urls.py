"""Database URLs: the store's default, and telling whether two URLs name one database."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.engine import URL

from active_data_flow.connectors.sqlalchemy._db._base import DEFAULT_URL
from active_data_flow.errors import (
    ConfigurationError,
)
from active_data_flow.masking import mask_text, mask_url

__all__ = ["resolve_url", "same_database"]


# -- URLs ----------------------------------------------------------------------------------
def resolve_url(
    url: str | URL | None,
    *,
    env: str = "ADF_DATABASE_URL",
    default: str = DEFAULT_URL,
) -> URL:
    """The URL to use: ``url``, else the environment variable ``env``, else ``default``.

    Raises:
        ConfigurationError: not a SQLAlchemy URL, or a ``postgres://`` URL (SQLAlchemy
            knows PostgreSQL as ``postgresql://``); the error names ``env`` as the option.
    """
    raw = url if url is not None else os.environ.get(env) or default
    try:
        parsed = sa.make_url(raw)
    except Exception as exc:  # SQLAlchemy's ArgumentError says little, and may echo a password
        raise ConfigurationError(
            f"{env}: not a database URL: {mask_url(str(raw))!r} ({mask_text(str(exc))})",
            option=env,
        ) from None
    _check_backend(parsed, env)
    return parsed


def _check_backend(url: URL, option: str) -> None:
    if url.get_backend_name() == "postgres":
        raise ConfigurationError(
            f"{option}: {mask_url(url)!r}: SQLAlchemy names PostgreSQL 'postgresql', not "
            "'postgres': write postgresql:// (or postgresql+psycopg://)",
            option=option,
        )


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def _server_key(url: URL) -> tuple[str, str, int | None, str | None]:
    backend = _backend(url)
    if backend == "sqlite":
        return backend, "", None, os.path.realpath(url.database or "")
    host = (url.host or "localhost").lower()
    if host in ("localhost", "127.0.0.1", "::1"):
        host = "localhost"
    default_port = {"postgresql": 5432, "mysql": 3306}.get(backend)
    return backend, host, url.port or default_port, url.database


def same_database(a: URL, b: URL) -> bool:
    """Whether two URLs point at the same database (same server and database, or same file),
    whatever their drivers, users or options."""
    return _server_key(a) == _server_key(b)


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") or (
        url.query.get("mode") == "memory")
