"""One way to write counts and throughputs (CLI tables, logs, web pages)."""

from __future__ import annotations

import pytest

from active_data_flow.formatting import count, rate, throughput


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (999, "999"), (1003, "1,003"), (1_250_000, "1,250,000"), (21791.4, "21,791"),
    (None, "—"),
])
def test_counts_have_thousands_separators(value: float | None, text: str) -> None:
    assert count(value) == text


def test_a_throughput_reads_like_a_count() -> None:
    assert rate(21791.2) == "21,791 rows/s"
    assert throughput(1003, 0.5) == "2,006 rows/s"
    assert throughput(10, 0) == "—"
    assert throughput(None, 1.0, empty="-") == "-"
