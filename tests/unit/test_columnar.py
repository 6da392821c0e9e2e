"""The columnar path: transform_batch over Arrow tables, in the one runner."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from active_data_flow import DataFlow, FlowRunError
from active_data_flow.columnar import as_table
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import ConfigurationError
from active_data_flow.runner import Checkpoint
from active_data_flow.runtimes.inline import Inline

RECORDS = [{"id": i, "n": i * 10} for i in range(10)]


def batch_flow(transform_batch: Any, **attrs: Any) -> DataFlow:
    namespace: dict[str, Any] = {
        "source": MemorySource(records=RECORDS), "sink": MemorySink(),
        "runtime": Inline(batch_size=4),
        "transform_batch": lambda self, batch: transform_batch(batch), **attrs,
    }
    return type("BatchFlow", (DataFlow,), namespace)()


def written(f: DataFlow) -> list[dict[str, Any]]:
    sink = type(f).sink
    assert isinstance(sink, MemorySink)
    return sink.records


def test_a_batch_transform_gets_arrow_tables_and_its_results_are_written() -> None:
    seen: list[int] = []

    def double(batch: pa.Table) -> pa.Table:
        seen.append(batch.num_rows)
        return batch.set_column(1, "n", pc.multiply(batch.column("n"), 2))

    f = batch_flow(double)
    result = f.run()
    assert seen == [4, 4, 2]
    assert (result.read, result.written, result.batches, result.cursor) == (10, 10, 3, 9)
    assert written(f) == [{"id": i, "n": i * 20} for i in range(10)]


def test_a_flow_defines_transform_or_transform_batch_not_both() -> None:
    with pytest.raises(ConfigurationError, match="both transform\\(\\) and transform_batch"):
        type("Both", (DataFlow,), {"transform": lambda s, m: m,
                                    "transform_batch": lambda s, b: b})


def test_polars_pandas_and_lists_of_dicts_are_accepted() -> None:
    import pandas as pd
    import polars as pl

    table = pa.table({"id": [1, 2]})
    assert as_table(pl.from_arrow(table)).to_pylist() == table.to_pylist()
    assert as_table(pd.DataFrame({"id": [1, 2]})).to_pylist() == table.to_pylist()
    assert as_table([{"id": 1}, {"id": 2}]).to_pylist() == table.to_pylist()
    assert as_table(None).num_rows == 0
    with pytest.raises(TypeError, match="transform_batch returned int"):
        as_table(3)


def failing_on(bad: set[int]) -> Any:
    def transform(batch: pa.Table) -> pa.Table:
        ids = set(batch.column("id").to_pylist())
        if ids & bad:
            raise ValueError(f"bad ids {sorted(ids & bad)}")
        return batch
    return transform


def test_a_failing_batch_is_retried_row_by_row_and_bad_rows_skipped() -> None:
    f = batch_flow(failing_on({2, 7}), on_error="skip")
    result = f.run()
    assert (result.read, result.written, result.failed) == (10, 8, 2)
    assert [r["id"] for r in written(f)] == [0, 1, 3, 4, 5, 6, 8, 9]


def test_failing_rows_are_dead_lettered_with_their_positions() -> None:
    dead = MemorySink()
    f = batch_flow(failing_on({5}), on_error="dead_letter", dead_letter_sink=dead)
    f.run()
    [letter] = dead.records
    assert letter["position"] == 5
    assert letter["message"] == {"id": 5, "n": 50}
    assert letter["error"] == "bad ids [5]"


def test_under_fail_the_run_fails_naming_the_failing_rows_and_keeps_the_last_cursor() -> None:
    f = batch_flow(failing_on({5, 6}))
    saved: list[Any] = []
    expected = r"failing rows: message 6 at position 5, message 7 at position 6\)"
    with pytest.raises(FlowRunError, match=expected) as err:
        f.run(checkpoint=saved.append)
    assert saved == [3]
    assert err.value.result is not None
    assert err.value.result.cursor == 3
    assert [r["id"] for r in written(f)] == [0, 1, 2, 3]


class Counting(Checkpoint):
    def __init__(self) -> None:
        self.cursors: list[Any] = []

    def __call__(self, cursor: Any) -> None:
        self.cursors.append(cursor)


def test_the_cursor_is_checkpointed_after_each_flushed_batch() -> None:
    checkpoint = Counting()
    f = batch_flow(lambda b: b.filter(pc.greater(b.column("id"), 4)))
    result = f.run(checkpoint=checkpoint)
    assert checkpoint.cursors == [3, 7, 9]
    assert (result.read, result.written) == (10, 5)
