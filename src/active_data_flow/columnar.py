"""The columnar path: batches of rows as Arrow tables (extra ``[arrow]``).

A flow that defines ``transform_batch(self, batch)`` instead of ``transform(message)`` gets
each batch as a :class:`pyarrow.Table` and returns one (or a polars / pandas DataFrame, a
record batch, a list of dicts, or ``None`` to drop the batch). Sources hand the runner
:class:`ArrowBatch`\\ es (:meth:`Source.read_batches`) and sinks take tables
(:meth:`Sink.write_table`); connectors without a columnar route of their own convert from
and to rows in the base classes, so every connector works on both paths.

pyarrow is imported on first use only: the core needs pydantic alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Message, as_record

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ArrowBatch", "as_table", "batches_of", "pyarrow", "table_from_records"]


def pyarrow(part: str | None = None) -> Any:
    """The ``pyarrow`` module, or its submodule ``part`` (``"json"``, ``"csv"``...): the
    one place the core imports the optional ``[arrow]`` extra, on first use.

    Raises:
        ConfigurationError: pyarrow is not installed (``pip install 'active-data-flow[arrow]'``).
    """
    try:
        import pyarrow as pa

        return importlib.import_module(f"pyarrow.{part}") if part else pa
    except ImportError:  # pragma: no cover - the test environment has it
        raise ConfigurationError(
            "the columnar path (transform_batch, Parquet) needs pyarrow: "
            "pip install 'active-data-flow[arrow]'", option="transform_batch",
        ) from None


@dataclass(frozen=True, slots=True)
class ArrowBatch:
    """One batch of a columnar read.

    Attributes:
        table: the rows, as an Arrow table.
        position: the position to resume after the batch (its last row's).
        position_at: the position of row ``i`` (for dead letters and error messages);
            ``None`` when the source cannot tell.
    """

    table: pa.Table
    position: Any
    position_at: Callable[[int], Any] | None = None

    def __len__(self) -> int:
        return int(self.table.num_rows)


def table_from_records(records: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts) as an Arrow table, column types inferred."""
    pa = pyarrow()
    return pa.Table.from_pylist(records)


def batches_of(messages: Iterator[Message], size: int) -> Iterator[ArrowBatch]:
    """Group a row source's messages into Arrow batches of up to ``size`` rows (the columnar
    path over any source)."""
    while True:
        chunk = list(islice(messages, size))
        if not chunk:
            return
        positions = [m.position for m in chunk]
        table = table_from_records([as_record(m) for m in chunk])
        del chunk
        yield ArrowBatch(table, positions[-1], positions.__getitem__)


def as_table(result: Any, what: str = "transform_batch") -> pa.Table:
    """What ``transform_batch`` returned, as an Arrow table.

    Accepts a pyarrow Table or RecordBatch, a polars or pandas DataFrame, a list of
    mappings / Messages, or ``None`` (nothing to write).

    Raises:
        TypeError: anything else.
    """
    pa = pyarrow()
    if isinstance(result, pa.Table):
        return result
    if result is None:
        return pa.table({})
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    module = type(result).__module__.split(".", 1)[0]
    if module == "polars" and hasattr(result, "to_arrow"):
        return result.to_arrow()
    if module == "pandas" and hasattr(result, "columns"):
        return pa.Table.from_pandas(result, preserve_index=False)
    if isinstance(result, list) and all(isinstance(r, (Mapping, Message)) for r in result):
        return table_from_records([as_record(r) for r in result])
    raise TypeError(
        f"{what} returned {type(result).__name__}; expected a pyarrow Table or RecordBatch, "
        "a polars or pandas DataFrame, a list of mappings, or None"
    )


def concat(tables: list[pa.Table]) -> pa.Table:
    """Tables one after another (types unified where they differ, e.g. all-null slices)."""
    pa = pyarrow()
    kept = [t for t in tables if t.num_rows or t.num_columns]
    if not kept:
        return pa.table({})
    if len(kept) == 1:
        return kept[0]
    return pa.concat_tables(kept, promote_options="permissive")
