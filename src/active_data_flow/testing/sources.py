"""The contract every Source should pass (subclass :class:`SourceContract` in a test module)."""

from __future__ import annotations

import unittest
from pathlib import Path
from typing import Any, ClassVar, Literal

from active_data_flow.connector import Source
from active_data_flow.errors import (
    ConfigurationError,
    ConnectorError,
)
from active_data_flow.message import Message
from active_data_flow.testing._contract import (
    Record,
    _check_partitions,
    _check_same,
    _close_iterator,
    _Contract,
    _count_closes,
    _json_round_trip,
    _plain,
    _short,
)

__all__ = ["SourceContract"]


class SourceContract(_Contract):
    """The behaviour every :class:`~active_data_flow.Source` must have, as pytest tests.

    Subclass it in a test module (the class name must start with ``Test``), implement
    :meth:`make_source` and declare what the source can do; pytest collects the ``test_*``
    methods and runs each on a fresh ``tmp_path``::

        from active_data_flow.testing import SourceContract

        class TestJsonLinesSource(SourceContract):
            splits = True
            cursor_beyond_end = "error"

            def make_source(self, records, tmp_path):
                path = tmp_path / "in.jsonl"
                path.write_text("".join(json.dumps(r) + "\\n" for r in records))
                return JsonLinesSource(path=path)

    What it checks: every record is read exactly once with its values (special values
    too: NULL, quotes, separators, line breaks, unicode, emoji, long strings); an empty
    source yields nothing; iterating, ``read()`` and ``count()`` agree; positions are
    JSON-safe and resuming after any of them yields exactly the rest, after the last one
    nothing; a cursor beyond the end yields nothing (or a clear error), one of another
    shape is a ``ConfigurationError`` naming ``cursor``; ``split(parts)`` covers a full
    read with disjoint parts, whatever ``parts``, also after a cursor; its partitions are
    JSON specs that resume on their own; ``to_dict()``/``from_dict()`` and ``clone()``
    rebuild an equivalent source; ``close()`` is idempotent and leaving a ``with`` block
    closes.

    Hooks (methods to override): :meth:`make_source` (required), ``make_records``,
    ``special_records``, ``expected``. A test may call ``make_source`` several times (to
    make sources of different lengths); each call may replace what an earlier one made
    (the same file or table), but sources already read need not stay readable.

    A test that a declared inability makes meaningless is skipped with a reason naming
    the declaration (``unittest.SkipTest``), never silently.

    .. versionadded:: 0.1
    """

    #: ``each()`` takes a cursor: positions resume (``Source.resumable`` must agree).
    resumable: ClassVar[bool] = True
    #: Reads yield records in the order given to ``make_source``.
    ordered: ClassVar[bool] = True
    #: ``split(parts)`` cuts enough data into more than one partition.
    splits: ClassVar[bool] = False
    #: What reading after a position beyond the end does: yield nothing, or raise a
    #: ``ConnectorError`` (file sources refuse an offset past the end of the file: it was
    #: truncated or replaced).
    cursor_beyond_end: ClassVar[Literal["empty", "error"]] = "empty"
    #: ``make_source`` can build a source of any records (false for a source whose data
    #: follows from its options, e.g. a range: it then only gets ``make_records`` output).
    arbitrary_records: ClassVar[bool] = True
    #: A JSON value no position of the source looks like: reading after it must raise a
    #: ``ConfigurationError`` naming option ``cursor`` (a flow's saved cursor from another
    #: source). Change it if this happens to be a valid position of yours.
    foreign_cursor: ClassVar[Any] = {"not": ["a", "position", "of", "this", "source"]}

    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        """A new source whose full read yields ``records`` (``expected(records)``)."""
        raise NotImplementedError(
            f"{self._label()} must implement make_source(self, records, tmp_path)"
        )

    # -- helpers ----------------------------------------------------------------------------
    def _read(self, source: Source, cursor: Any = None) -> list[Message]:
        messages = list(source.read(cursor))
        for message in messages:
            if not isinstance(message, Message):
                raise AssertionError(
                    f"{type(source).__qualname__} yielded a {type(message).__qualname__}, "
                    "not a Message"
                )
        return messages

    def _source(self, records: list[Record], tmp_path: Path) -> Source:
        source = self.make_source(records, tmp_path)
        if not isinstance(source, Source):
            raise AssertionError(f"make_source returned a {type(source).__qualname__}, "
                                 "not a Source")
        return source

    def _full(self, tmp_path: Path) -> tuple[list[Record], Source, list[Message]]:
        records = self.make_records(self.record_count)
        source = self._source(records, tmp_path)
        return records, source, self._read(source)

    def _needs_resume(self) -> None:
        if not self.resumable:
            raise unittest.SkipTest(
                f"{self._label()} declares resumable = False (so it must refuse cursors: "
                "test_positions_resume_strictly_after_their_message checks that)"
            )

    # -- reading ----------------------------------------------------------------------------
    def test_reads_every_record_exactly_once_with_its_values(self, tmp_path: Path) -> None:
        records, _, messages = self._full(tmp_path)
        self._check(messages, records, "a full read", ordered=self.ordered)

    def test_special_values_are_read_back_intact(self, tmp_path: Path) -> None:
        if not self.arbitrary_records:
            raise unittest.SkipTest(
                f"{self._label()} declares arbitrary_records = False: its data follows from "
                "its options"
            )
        records = self.special_records()
        messages = self._read(self._source(records, tmp_path))
        self._check(messages, records, "special values", ordered=self.ordered)

    def test_an_empty_source_yields_nothing(self, tmp_path: Path) -> None:
        source = self._source([], tmp_path)
        _check_same(_plain(self._read(source)), [], "an empty source")
        if source.count() not in (None, 0):
            raise AssertionError(f"an empty source counts {source.count()!r}, not 0 or None")
        for parts in (1, 3):
            pieces = source.split(parts)
            _check_partitions(pieces, parts)
            got = [m for p in pieces for m in self._read(p.source, p.cursor)]
            _check_same(_plain(got), [], f"split({parts}) of an empty source")
        source.close()

    def test_iterating_reading_and_counting_agree(self, tmp_path: Path) -> None:
        records, source, messages = self._full(tmp_path)
        _check_same(_plain(source), _plain(messages), "iter(source) against read()",
                    ordered=self.ordered)
        _check_same(_plain(self._read(source, None)), _plain(messages),
                    "read(None) against read()", ordered=self.ordered)
        count = source.count()
        if count is not None and count != len(records):
            raise AssertionError(f"count() is {count}, but a full read yields {len(records)}")

    # -- positions --------------------------------------------------------------------------
    def test_declares_whether_it_can_resume(self, tmp_path: Path) -> None:
        source = self._source(self.make_records(2), tmp_path)
        if type(source).resumable is not self.resumable:
            raise AssertionError(
                f"{type(source).__qualname__}.resumable is {type(source).resumable}, but "
                f"{self._label()} declares resumable = {self.resumable} (a source resumes "
                "when its each() takes a cursor)"
            )

    def test_positions_resume_strictly_after_their_message(self, tmp_path: Path) -> None:
        _, source, messages = self._full(tmp_path)
        if not self.resumable:
            try:
                self._read(source.clone(), 0)
            except ConfigurationError:
                return
            raise AssertionError("a source that cannot resume accepted a cursor")
        everything = _plain(messages)
        for i, message in enumerate(messages):
            if message.position is None:
                raise AssertionError(f"message {i + 1} of a resumable source has no position")
            cursor = _json_round_trip(message.position, f"the position of message {i + 1}")
            rest = self._read(source.clone(), cursor)
            _check_same(_plain(rest), everything[i + 1:],
                        f"resuming after message {i + 1} of {len(messages)} "
                        f"(cursor {_short(cursor)})", ordered=self.ordered)

    def test_a_cursor_of_another_shape_is_a_configuration_error(self, tmp_path: Path) -> None:
        self._needs_resume()
        source = self._source(self.make_records(3), tmp_path)
        cursor = self.foreign_cursor
        try:
            self._read(source, cursor)
        except ConfigurationError as exc:
            if exc.option != "cursor":
                raise AssertionError(f"the error names option {exc.option!r}, not 'cursor'") \
                    from exc
            return
        except Exception as exc:
            raise AssertionError(f"reading after {_short(cursor)}, which no position of this "
                                 f"source looks like, raised {type(exc).__qualname__}: {exc} "
                                 "(expected: a ConfigurationError naming option 'cursor')") \
                from exc
        raise AssertionError(f"reading after {_short(cursor)}, which no position of this "
                             "source looks like, raised no ConfigurationError")

    def test_a_cursor_beyond_the_end_yields_nothing(self, tmp_path: Path) -> None:
        self._needs_resume()
        count = self.record_count
        more = self.make_records(count * 2)
        beyond = self._read(self._source(more, tmp_path))[count + 4].position
        cursor = _json_round_trip(beyond, "a position")
        records = more[:count]
        source = self._source(records, tmp_path)
        messages = self._read(source)
        last = _json_round_trip(messages[-1].position, "the last position")
        _check_same(_plain(self._read(source.clone(), last)), [], "resuming after the last "
                    "message")
        if self.cursor_beyond_end == "empty":
            _check_same(_plain(self._read(source.clone(), cursor)), [],
                        f"reading after a cursor beyond the end ({_short(cursor)})")
            return
        try:
            self._read(source.clone(), cursor)
        except ConnectorError as exc:
            if not str(exc):
                raise AssertionError("the error for a cursor beyond the end says nothing") \
                    from exc
            return
        raise AssertionError(f"{self._label()} declares cursor_beyond_end = 'error', but "
                             f"reading after {_short(cursor)} raised no ConnectorError")

    # -- partitions -------------------------------------------------------------------------
    def test_split_covers_a_full_read_with_disjoint_parts(self, tmp_path: Path) -> None:
        _, source, messages = self._full(tmp_path)
        everything = _plain(messages)
        for parts in (1, 2, 3, 4, 7, 64):
            pieces = source.split(parts)
            _check_partitions(pieces, parts)
            if self.splits and parts > 1 and len(pieces) < 2:
                raise AssertionError(f"{self._label()} declares splits = True, but "
                                     f"split({parts}) gave one partition")
            got = [m for p in pieces for m in self._read(p.source, p.cursor)]
            _check_same(_plain(got), everything, f"the {len(pieces)} partitions of "
                        f"split({parts})")
        for bad in (0, -1):
            try:
                source.split(bad)
            except ConfigurationError:
                continue
            raise AssertionError(f"split({bad}) raised no ConfigurationError")

    def test_split_after_a_cursor_covers_exactly_the_rest(self, tmp_path: Path) -> None:
        self._needs_resume()
        _, source, messages = self._full(tmp_path)
        cut = len(messages) // 3
        cursor = _json_round_trip(messages[cut - 1].position, "a position")
        rest = _plain(messages[cut:])
        for parts in (1, 2, 5):
            pieces = source.split(parts, cursor)
            _check_partitions(pieces, parts)
            got = [m for p in pieces for m in self._read(p.source, p.cursor)]
            _check_same(_plain(got), rest, f"split({parts}) after message {cut}")

    def test_partitions_are_json_specs_that_resume_on_their_own(self, tmp_path: Path) -> None:
        _, source, _ = self._full(tmp_path)
        for piece in source.split(3):
            spec = _json_round_trip(piece.to_dict(), "a partition's to_dict()")
            rebuilt = Source.from_dict(spec["source"])
            if type(rebuilt) is not type(piece.source):
                raise AssertionError(f"a partition's spec rebuilt a {type(rebuilt).__name__}")
            part = self._read(piece.source, piece.cursor)
            _check_same(_plain(self._read(rebuilt, spec["cursor"])), _plain(part),
                        "a partition rebuilt from its spec", ordered=True)
            if self.resumable and part:
                first = _json_round_trip(part[0].position, "a partition's position")
                _check_same(_plain(self._read(rebuilt.clone(), first)), _plain(part[1:]),
                            "a partition resumed after its first message", ordered=True)

    # -- specs and lifecycle ----------------------------------------------------------------
    def test_to_dict_and_from_dict_rebuild_an_equivalent_source(self, tmp_path: Path) -> None:
        _, source, messages = self._full(tmp_path)
        spec = source.to_dict()
        if set(spec) != {"type", "config"}:
            raise AssertionError(f"to_dict() gave keys {sorted(spec)}, not type and config")
        stored = _json_round_trip(spec, "to_dict()")
        if stored != spec:
            raise AssertionError(f"to_dict() changes through JSON: {spec!r} -> {stored!r}")
        rebuilt = Source.from_dict(stored)
        if type(rebuilt) is not type(source):
            raise AssertionError(f"from_dict() built a {type(rebuilt).__qualname__}, not a "
                                 f"{type(source).__qualname__}")
        if rebuilt.to_dict() != spec:
            raise AssertionError(f"the rebuilt source's spec differs: {rebuilt.to_dict()!r}")
        _check_same(_plain(self._read(rebuilt)), _plain(messages), "the rebuilt source",
                    ordered=self.ordered)

    def test_clone_is_an_equivalent_fresh_source(self, tmp_path: Path) -> None:
        _, source, messages = self._full(tmp_path)
        clone = source.clone()
        if clone is source or type(clone) is not type(source):
            raise AssertionError("clone() must return a new instance of the same class")
        if clone.config != source.config:
            raise AssertionError(f"the clone's options differ: {clone.config!r}")
        _check_same(_plain(self._read(clone)), _plain(messages), "the clone",
                    ordered=self.ordered)

    def test_close_is_idempotent_and_leaving_a_with_block_closes(self, tmp_path: Path) -> None:
        source = self._source(self.make_records(self.record_count), tmp_path)
        closes = _count_closes(source)
        with source as entered:
            if entered is not source:
                raise AssertionError("`with source as s` must give the source itself")
            stream = iter(entered.read())
            next(stream, None)  # a read left open half-way
        if closes != [1]:
            raise AssertionError(f"leaving the with block called close() {len(closes)} times")
        source.close()
        source.close()
        _close_iterator(stream)
        unused = self._source(self.make_records(2), tmp_path)
        unused.close()
        unused.close()
