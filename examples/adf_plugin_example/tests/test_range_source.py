"""The source contract of ActiveDataFlow, run on this plugin's range source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adf_plugin_example import RangeSource

from active_data_flow import Source
from active_data_flow.testing import SourceContract


class TestRangeSource(SourceContract):
    key = "n"
    # A range's records follow from its options: the contract cannot choose them, so it
    # skips its special-values test (saying so) and reads back what make_records gives.
    arbitrary_records = False

    def make_records(self, count: int) -> list[dict[str, Any]]:
        return [{"n": i} for i in range(count)]

    def make_source(self, records: list[dict[str, Any]], tmp_path: Path) -> Source:
        return RangeSource(stop=len(records))
