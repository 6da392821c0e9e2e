"""The source's query: columns, filters, reading order, and the page statements.

Every page is ``SELECT ... WHERE <filters> AND <key bounds> ORDER BY <key> LIMIT n``. The
bounds are positions on the key: *after* (exclusive, where the last page or the cursor
ended), *not after* (inclusive upper bound: the end of a lag window, or of a partition) and
*first from* (an inclusive lower bound on the key's first column: the start of a lag
window). A partitioned read (issue 6) is a plan with an ``after`` and a ``not_after``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Load, selectinload
from sqlalchemy.sql.elements import ColumnElement

from active_data_flow.connectors.sqlalchemy._cursor import Keyset, decode_value
from active_data_flow.connectors.sqlalchemy._models import ModelInfo
from active_data_flow.errors import ConfigurationError

__all__ = ["QueryPlan", "parse_order"]


def parse_order(item: str) -> tuple[str, bool]:
    """``"name"``, ``"-name"``, ``"name desc"`` -> ``(name, descending)``."""
    text = item.strip()
    if text.startswith("-"):
        return text[1:].strip(), True
    parts = text.split()
    if len(parts) == 2 and parts[1].lower() in ("asc", "desc"):
        return parts[0], parts[1].lower() == "desc"
    if len(parts) != 1:
        raise ConfigurationError(
            f"order_by entry {item!r} must be 'column', '-column', 'column asc' or "
            "'column desc'", option="order_by",
        )
    return text, False


@dataclass(frozen=True)
class QueryPlan:
    """What a source reads, decided once from its options (no database needed)."""

    info: ModelInfo
    keyset: Keyset
    keys: tuple[str, ...]  # the message's fields, in order
    key_indexes: tuple[int, ...]  # where the keyset's columns are among them
    filters: tuple[ColumnElement[bool], ...]
    includes: tuple[str, ...] = ()
    nested: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        info: ModelInfo,
        *,
        where: Mapping[str, Any],
        order_by: Sequence[str],
        select: Sequence[str] | None,
        includes: Sequence[str],
        cursor_column: Sequence[str] | None,
        what: str,
    ) -> QueryPlan:
        """Check the options against the model and plan the query.

        Raises:
            ConfigurationError: naming the option at fault.
        """
        keyset = _keyset(info, order_by, cursor_column, what)
        if select is not None:
            info.check_columns(list(select), "select", what)
            if not select:
                raise ConfigurationError(f"{what}: option 'select' is empty", option="select")
        chosen = list(dict.fromkeys(select if select is not None else info.columns))
        keys = tuple(chosen + [k for k in keyset.keys if k not in chosen])
        nested: dict[str, Any] = {}
        for path in includes:
            info.relationship(path, what)
            node = nested
            for step in path.split("."):
                node = node.setdefault(step, {})
        return cls(
            info=info,
            keyset=keyset,
            keys=keys,
            key_indexes=tuple(keys.index(k) for k in keyset.keys),
            filters=_filters(info, where, what),
            includes=tuple(includes),
            nested=nested,
        )

    @property
    def uses_orm(self) -> bool:
        """Relationships are eager-loaded through ORM objects (else plain Core rows)."""
        return bool(self.includes)

    def statement(
        self,
        dialect: str,
        *,
        limit: int,
        after: Sequence[Any] | None = None,
        not_after: Sequence[Any] | None = None,
        first_from: Any = None,
    ) -> sa.Select[Any]:
        """One page: up to ``limit`` rows in key order within the given bounds."""
        criteria = list(self.filters)
        if after is not None:
            criteria.append(self.keyset.after(after, dialect))
        if not_after is not None:
            criteria.append(self.keyset.at_or_before(not_after, dialect))
        if first_from is not None:
            first = self.keyset.columns[0]
            criteria.append(first <= first_from if self.keyset.descending[0]
                            else first >= first_from)
        if self.uses_orm:
            stmt: sa.Select[Any] = sa.select(self.info.cls).options(*self._loader_options())
        else:
            stmt = sa.select(*(self.info.columns[k] for k in self.keys))
        return stmt.where(*criteria).order_by(*self.keyset.order_by()).limit(limit)

    def count_statement(self) -> sa.Select[Any]:
        """``SELECT count(*)`` of the rows a full read yields (before ``limit``)."""
        return sa.select(sa.func.count()).select_from(self.info.table).where(*self.filters)

    def _loader_options(self) -> list[Any]:
        options: list[Any] = []
        if len(self.keys) < len(self.info.columns):
            columns = [getattr(self.info.cls, k) for k in self.keys]
            options.append(Load(self.info.cls).load_only(*columns))
        for path in self.includes:
            chain = self.info.relationship(path, "includes")
            loader = selectinload(chain[0].class_attribute)
            for rel in chain[1:]:
                loader = loader.selectinload(rel.class_attribute)
            options.append(loader)
        return options

    def as_record(self, obj: Any) -> dict[str, Any]:
        """An ORM object as a message's fields, with its included relationships nested."""
        record = {k: getattr(obj, k) for k in self.keys}
        record.update(_nested(obj, self.nested))
        return record


def _nested(obj: Any, nested: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, children in nested.items():
        value = getattr(obj, name)
        if value is None:
            out[name] = None
        elif isinstance(value, (list, set, tuple)):
            out[name] = [_object_dict(v, children) for v in value]
        else:
            out[name] = _object_dict(value, children)
    return out


def _object_dict(obj: Any, nested: Mapping[str, Any]) -> dict[str, Any]:
    mapper = sa.inspect(obj).mapper
    record = {prop.key: getattr(obj, prop.key) for prop in mapper.column_attrs}
    record.update(_nested(obj, nested))
    return record


def _keyset(
    info: ModelInfo, order_by: Sequence[str], cursor_column: Sequence[str] | None, what: str
) -> Keyset:
    """The reading order: the cursor columns, else ``order_by``, else the primary key;
    completed with the primary key when it would not be unique."""
    ordered = [parse_order(o) for o in order_by]
    if cursor_column:
        if ordered and [(c, False) for c in cursor_column] != ordered[: len(cursor_column)]:
            raise ConfigurationError(
                f"{what}: 'order_by' {list(order_by)} conflicts with 'cursor_column' "
                f"{list(cursor_column)}: an incremental source reads in cursor order; set "
                "one of them", option="order_by",
            )
        ordered = [(c, False) for c in cursor_column] + ordered[len(cursor_column):]
        option = "cursor_column"
    else:
        option = "order_by"
    if not info.primary_key:
        raise ConfigurationError(f"{what}: model {info.name} has no primary key", option="model")
    if not ordered:
        ordered = [(k, False) for k in info.primary_key]
    info.check_columns([c for c, _ in ordered], option, what)
    names = [c for c, _ in ordered]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{what}: option {option!r} repeats a column", option=option)
    if not info.is_unique(names):
        # Ties on a non-unique column must not be skipped at a page boundary: the
        # primary key makes every position unique.
        last_desc = ordered[-1][1]
        ordered += [(k, last_desc) for k in info.primary_key if k not in names]
    for name, _ in ordered:
        column = info.columns[name]
        if column.nullable and name not in info.primary_key:
            raise ConfigurationError(
                f"{what}: option {option!r}: column {name!r} is nullable, and rows where it is "
                "NULL would never be read in key order; declare it NOT NULL "
                "(nullable=False) or read in another order",
                option=option,
            )
    return Keyset(
        keys=tuple(c for c, _ in ordered),
        columns=tuple(info.columns[c] for c, _ in ordered),
        descending=tuple(d for _, d in ordered),
    )


def _filters(info: ModelInfo, where: Mapping[str, Any], what: str) -> tuple[Any, ...]:
    info.check_columns(list(where), "where", what)
    out: list[Any] = []
    for name, value in where.items():
        column = info.columns[name]
        label = f"{what}: option 'where'"
        try:
            if value is None:
                out.append(column.is_(None))
            elif isinstance(value, (list, tuple, set, frozenset)):
                values = [decode_value(column, v, label) for v in value]
                out.append(column.in_(values) if values else sa.false())
            else:
                out.append(column == decode_value(column, value, label))
        except ValueError as exc:
            raise ConfigurationError(str(exc), option="where") from None
    return tuple(out)
