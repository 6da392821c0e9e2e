"""What the source and sink contracts share: test records, special values, checks."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from active_data_flow.connector import Partition, Sink, Source
from active_data_flow.message import Message, as_record

__all__ = ["SPECIAL_VALUES", "Record"]

Record = dict[str, Any]

#: Values that break naive connectors: NULL, empty and blank strings, quotes, separators,
#: every kind of line break, non-ASCII text, emoji (4-byte UTF-8, joiners, flags), look-alikes
#: of NULL and long strings. :meth:`SourceContract.special_records` and
#: :meth:`SinkContract.special_records` put one in each record's ``name``.
SPECIAL_VALUES: tuple[str | None, ...] = (
    None,
    "",
    " ",
    "  padded  ",
    "ünïcödé / Ελληνικά / 中文 / עברית / русский",
    'double "quotes" and ""doubled""',
    "single 'quotes'",
    "comma, separated, values",
    "semi;colon|pipe\ttab",
    "line\nbreak",
    "windows\r\nbreak",
    "lone\rreturn",
    "trailing newline\n",
    "\u2028line and paragraph separators\u2029",
    "emoji 🎉 👩\u200d💻 🇫🇷",
    "back\\slash \\n not a newline",
    "NULL",
    "null",
    "<b>&amp; markup</b>",
    "x" * 10_000,
    "é" * 5_000,
)


class _HookFailed(Exception):
    """The error a contract's ``flush_with`` hook raises on purpose."""


class _Contract:
    """Hooks and checks :class:`SourceContract` and :class:`SinkContract` share."""

    #: The field that identifies a record (for duplicate and missing keys).
    key: ClassVar[str] = "id"
    #: How many ordinary records the tests use.
    record_count: ClassVar[int] = 24

    def make_records(self, count: int) -> list[Record]:
        """``count`` ordinary records, the first ``n`` of ``make_records(m)`` being
        ``make_records(n)``. Default: ``{"id": 1, "name": "record 1"}``, ...

        Override when the connector holds records of another shape (then set ``key``).
        """
        return [{"id": i, "name": f"record {i}"} for i in range(1, count + 1)]

    def special_records(self) -> list[Record]:
        """Records carrying :data:`SPECIAL_VALUES`: ``{"id": i, "name": value}``."""
        return [{"id": i, "name": value} for i, value in enumerate(SPECIAL_VALUES, 1)]

    def expected(self, records: list[Record]) -> list[Record]:
        """How ``records`` come back once read (or stored and read back).

        The default is "exactly as they are". Override it to state what the format does,
        e.g. CSV gives strings, and ``None`` becomes the empty string; a table fills the
        columns a record lacks with NULL.
        """
        return [dict(r) for r in records]

    # -- checks ---------------------------------------------------------------------------
    def _check(
        self, got: Iterable[Message | Mapping[str, Any]], records: list[Record], what: str,
        *, ordered: bool = False,
    ) -> None:
        """``got`` holds exactly the records ``expected(records)`` (in order if ``ordered``)."""
        _check_same(_plain(got), self.expected(records), what, ordered=ordered)

    def _label(self) -> str:
        return type(self).__qualname__


def _plain(items: Iterable[Message | Mapping[str, Any]]) -> list[Record]:
    return [dict(as_record(item)) for item in items]


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=repr)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _check_same(got: list[Record], want: list[Record], what: str, *, ordered: bool = False) -> None:
    """Raise an ``AssertionError`` that names missing, unexpected and misplaced records."""
    got_keys, want_keys = list(map(_canonical, got)), list(map(_canonical, want))
    if got_keys == want_keys or (not ordered and Counter(got_keys) == Counter(want_keys)):
        return
    lines = [f"{what}: expected {len(want)} record(s), got {len(got)}"]
    missing = Counter(want_keys) - Counter(got_keys)
    extra = Counter(got_keys) - Counter(want_keys)
    for title, counter in (("missing", missing), ("unexpected or repeated", extra)):
        if counter:
            shown = [f"  {_short(json.loads(k))} x{n}" for k, n in list(counter.items())[:5]]
            more = len(counter) - len(shown)
            lines += [f"{title}:", *shown, *([f"  ... and {more} more"] if more > 0 else [])]
    if not missing and not extra:
        index = next(i for i, (g, w) in enumerate(zip(got_keys, want_keys, strict=True))
                     if g != w)
        lines.append(f"the same records in another order; first difference at {index}: "
                     f"got {_short(got[index])}, expected {_short(want[index])}")
    raise AssertionError("\n".join(lines))


def _check_partitions(pieces: Any, parts: int) -> None:
    if not isinstance(pieces, list) or not all(isinstance(p, Partition) for p in pieces):
        raise AssertionError(f"split({parts}) must return a list of Partition, got {pieces!r}")
    if not 1 <= len(pieces) <= parts:
        raise AssertionError(f"split({parts}) returned {len(pieces)} partitions")


def _json_round_trip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} is not JSON-safe: {_short(value)} ({exc})") from exc


def _last_per_key(records: list[Record], key: str) -> list[Record]:
    latest: dict[str, Record] = {}
    for record in records:
        latest.pop(_canonical({key: record.get(key)}), None)
        latest[_canonical({key: record.get(key)})] = record
    return list(latest.values())


def _caused_by(exc: BaseException | None, cause: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if exc is cause:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _count_closes(connector: Source | Sink) -> list[int]:
    """Count calls of ``connector.close()`` from now on (``with`` blocks included)."""
    calls: list[int] = []
    close: Callable[[], None] = connector.close

    def counting() -> None:
        calls.append(1)
        close()

    connector.close = counting  # type: ignore[method-assign]
    return calls


def _close_iterator(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if callable(close):
        close()
