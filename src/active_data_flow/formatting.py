"""How numbers read wherever the package shows them (CLI tables, logs, web pages): one
place, so a count and a throughput side by side look alike (``1,003`` and
``21,791 rows/s``)."""

from __future__ import annotations

__all__ = ["count", "rate", "throughput"]


def count(value: float | None, *, empty: str = "—") -> str:
    """A whole number with thousands separators (``1,003``); ``empty`` for ``None``."""
    if value is None:
        return empty
    return f"{round(value):,}"


def rate(per_second: float | None, *, empty: str = "—") -> str:
    """A throughput, rounded, with separators: ``21,791 rows/s``."""
    return empty if per_second is None else f"{count(per_second)} rows/s"


def throughput(rows: float | None, seconds: float | None, *, empty: str = "—") -> str:
    """``rows`` over ``seconds`` as :func:`rate` writes it; ``empty`` when there is nothing
    to divide (no duration yet)."""
    if rows is None or not seconds or seconds <= 0:
        return empty
    return rate(rows / seconds)
