"""Options every table sink shares, whatever its ORM: the seed's ActiveRecord sink options
(batching, upsert keys, transactions, the single-record path's validations and callbacks).

The SQLAlchemy and Django sinks add their ``model`` and ``database`` to these; keeping the
fields here keeps both families' specs, forms and docs the same.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from active_data_flow.connector import SinkConfig

__all__ = ["TableSinkOptions", "names"]


def names(value: Any) -> Any:
    """Accept one column (or field) name where a list of them is expected."""
    return [value] if isinstance(value, str) else value


class TableSinkOptions(SinkConfig):
    """``batch_size`` (1: the single-record path), ``upsert`` with ``unique_by`` /
    ``update_only``, ``transaction`` / ``transaction_batch_size``, ``skip_validations``,
    ``skip_callbacks``."""

    batch_size: int = Field(default=1000, ge=1, le=100_000)
    upsert: bool = False
    unique_by: list[str] | None = None
    update_only: list[str] | None = None
    transaction: bool = True
    transaction_batch_size: int | None = Field(default=None, ge=1)
    skip_validations: bool = False
    skip_callbacks: bool = False

    _as_lists = field_validator("unique_by", "update_only", mode="before")(names)
