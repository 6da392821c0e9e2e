"""Keyset positions: the source's reading order, its JSON-safe cursors and their predicates.

A source reads in the order of its *key*: the cursor columns (default: the primary key),
made unique with the primary key when they are not, so that no two rows share a position.
A position is the key's value for a one-column key (``42``) and the list of its values for
a composite one (``["2024-05-01T12:00:00", 42]``), JSON-safe: datetimes, dates and times as
ISO strings, decimals and UUIDs as strings, bytes as hex. Resuming decodes it by the
columns' types and reads strictly after it; ties on a non-unique leading column are never
skipped because the comparison covers the whole key.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from active_data_flow.errors import ConfigurationError

__all__ = ["Keyset", "decode_value"]

_JSON_SCALARS = (str, int, float, bool)
# Dialects whose optimisers use an index for a row-value comparison ``(a, b) > (x, y)``;
# MariaDB/MySQL get the equivalent expanded form, which they can range-scan.
_ROW_VALUE_DIALECTS = {"postgresql", "sqlite"}


def _python_type(column: sa.Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _encoder(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    """How to make a value of ``column`` JSON-safe (``None``: it already is)."""
    kind = _python_type(column)
    if kind in (int, str, bool):
        return None
    if kind is not None and issubclass(kind, (dt.date, dt.time)):
        return _iso
    if kind is bytes:
        return _hex
    return _generic


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None else None


def _hex(value: Any) -> Any:
    return bytes(value).hex() if value is not None else None


def _generic(value: Any) -> Any:
    if value is None or isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def decode_value(column: sa.Column[Any], value: Any, what: str) -> Any:
    """A JSON value (from a cursor or a ``where`` option) as a value of ``column``'s type.

    Raises:
        ValueError: the value does not fit the column's type.
    """
    kind = _python_type(column)
    if value is None or kind is None or isinstance(value, kind):
        if kind is int and isinstance(value, bool):
            raise ValueError(f"{what}: {value!r} is not an integer for column {column.key!r}")
        return value
    try:
        if kind is dt.datetime:
            return dt.datetime.fromisoformat(value)
        if kind is dt.date:
            return dt.date.fromisoformat(value)
        if kind is dt.time:
            return dt.time.fromisoformat(value)
        if kind is Decimal:
            return Decimal(str(value))
        if kind is uuid.UUID:
            return uuid.UUID(str(value))
        if kind is bytes:
            return bytes.fromhex(value)
        if issubclass(kind, enum.Enum):
            return kind[value] if value in kind.__members__ else kind(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(
            f"{what}: {value!r} is not a valid {kind.__name__} for column {column.key!r}: {exc}"
        ) from None
    if kind in (int, float, str, bool):
        raise ValueError(f"{what}: {value!r} is not a {kind.__name__} for column {column.key!r}")
    return value


@dataclass(frozen=True)
class Keyset:
    """An ordered unique key: its columns, directions, predicates and position codec."""

    keys: tuple[str, ...]
    columns: tuple[sa.Column[Any], ...]
    descending: tuple[bool, ...]

    def order_by(self) -> list[ColumnElement[Any]]:
        """ORDER BY clauses reading in key order."""
        pairs = zip(self.columns, self.descending, strict=True)
        return [c.desc() if d else c.asc() for c, d in pairs]

    def after(self, values: Sequence[Any], dialect: str) -> ColumnElement[bool]:
        """Rows strictly after ``values`` in key order."""
        return self._compare(values, dialect, strict=True, forward=True)

    def at_or_before(self, values: Sequence[Any], dialect: str) -> ColumnElement[bool]:
        """Rows at or before ``values`` in key order."""
        return self._compare(values, dialect, strict=False, forward=False)

    def _compare(
        self, values: Sequence[Any], dialect: str, *, strict: bool, forward: bool
    ) -> ColumnElement[bool]:
        binds = [sa.literal(v, c.type) for c, v in zip(self.columns, values, strict=True)]
        if len(self.columns) == 1 or (
            dialect in _ROW_VALUE_DIALECTS and len(set(self.descending)) == 1
        ):
            # One comparison of the whole key: index-friendly where row values are.
            left = self.columns[0] if len(self.columns) == 1 else sa.tuple_(*self.columns)
            right = binds[0] if len(binds) == 1 else sa.tuple_(*binds)
            return _op(left, right, up=forward != self.descending[0], strict=strict)
        return self._expanded(0, binds, strict=strict, forward=forward)

    def _expanded(
        self, i: int, binds: list[Any], *, strict: bool, forward: bool
    ) -> ColumnElement[bool]:
        # (c1 >= v1) AND (c1 > v1 OR <the same on the remaining columns>): the leading
        # comparison lets MySQL/MariaDB range-scan an index on c1.
        col, up = self.columns[i], forward != self.descending[i]
        if i == len(self.columns) - 1:
            return _op(col, binds[i], up=up, strict=strict)
        rest = self._expanded(i + 1, binds, strict=strict, forward=forward)
        return sa.and_(
            _op(col, binds[i], up=up, strict=False),
            sa.or_(_op(col, binds[i], up=up, strict=True), rest),
        )

    # -- positions ------------------------------------------------------------------------
    def position_getter(self, indexes: Sequence[int]) -> Callable[[Sequence[Any]], Any]:
        """A function from a result row to the JSON-safe position of that row.

        ``indexes`` are the key columns' places in the row.
        """
        encoders = [_encoder(c) for c in self.columns]
        if len(indexes) == 1:
            (i,), (enc,) = indexes, encoders
            if enc is None:
                return lambda row: row[i]
            return lambda row: enc(row[i])
        get = itemgetter(*indexes)
        if all(e is None for e in encoders):
            return lambda row: list(get(row))
        pairs = list(zip(indexes, encoders, strict=True))
        return lambda row: [row[i] if e is None else e(row[i]) for i, e in pairs]

    def plain_index(self, indexes: Sequence[int]) -> int | None:
        """For a one-column key that needs no encoding, its place in the row; else None."""
        if len(indexes) == 1 and _encoder(self.columns[0]) is None:
            return indexes[0]
        return None

    def decode(self, position: Any, what: str) -> tuple[Any, ...]:
        """The key values of a position given back as a cursor.

        A one-column key's position may also be given as a one-item list.

        Raises:
            ConfigurationError: the cursor does not fit this key (option ``cursor``).
        """
        if len(self.keys) == 1 and not isinstance(position, (list, tuple, dict)):
            position = [position]
        if not isinstance(position, (list, tuple)) or len(position) != len(self.keys):
            expected = (f"a value of {self.keys[0]}" if len(self.keys) == 1 else
                        f"a list of {len(self.keys)} values, for {', '.join(self.keys)}")
            raise ConfigurationError(
                f"{what}: cursor {position!r} is not a position of this source: expected "
                f"{expected}", option="cursor",
            )
        try:
            return tuple(
                decode_value(c, v, f"{what}: cursor")
                for c, v in zip(self.columns, position, strict=True)
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc), option="cursor") from None

    def encode(self, values: Sequence[Any]) -> Any:
        """The JSON-safe position of key ``values``."""
        out: list[Any] = []
        for column, value in zip(self.columns, values, strict=True):
            enc = _encoder(column)
            out.append(value if enc is None else enc(value))
        return out[0] if len(out) == 1 else out


def _op(left: Any, right: Any, *, up: bool, strict: bool) -> ColumnElement[bool]:
    if up:
        return left > right if strict else left >= right  # type: ignore[no-any-return]
    return left < right if strict else left <= right  # type: ignore[no-any-return]
