"""The contract every Sink should pass (subclass :class:`SinkContract` in a test module)."""

from __future__ import annotations

import unittest
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Literal

from active_data_flow.connector import Sink
from active_data_flow.errors import (
    SinkError,
)
from active_data_flow.message import Untyped
from active_data_flow.testing._contract import (
    Record,
    _canonical,
    _caused_by,
    _check_same,
    _Contract,
    _count_closes,
    _HookFailed,
    _json_round_trip,
    _last_per_key,
    _plain,
)

__all__ = ["SinkContract"]


class SinkContract(_Contract):
    """The behaviour every :class:`~active_data_flow.Sink` must have, as pytest tests.

    Subclass it in a test module (the class name must start with ``Test``), implement
    :meth:`make_sink` and :meth:`read_back`, and declare the sink's policies; pytest
    collects the ``test_*`` methods and runs each on a fresh ``tmp_path``::

        from active_data_flow.testing import SinkContract

        class TestJsonLinesSink(SinkContract):
            def make_sink(self, tmp_path):
                return JsonLinesSink(path=tmp_path / "out.jsonl")

            def read_back(self, sink):
                path = sink.config.path
                text = path.read_text() if path.exists() else ""
                return [json.loads(line) for line in text.split("\n") if line]

    What it checks: records given to ``write`` (mappings and Messages) and ``write_batch``
    (any iterable) are stored exactly once with their values once ``flush()`` returns,
    special values included; flushing again, or an empty batch, stores nothing more;
    ``discard()`` drops what was not flushed; ``close()`` flushes, is idempotent, and
    leaving a ``with`` block closes; ``flush_with(hook)`` either calls the hook once inside
    its transaction (the batch not yet visible) and returns its result, or returns
    ``False`` without calling it; a hook that raises leaves nothing of the batch stored
    (transactional sinks); duplicate keys and records missing a field or their key are
    handled per the declared policy; ``to_dict()``/``from_dict()`` and ``clone()`` build
    sinks that write to the same place.

    Hooks: :meth:`make_sink` and :meth:`read_back` (required), ``make_records``,
    ``special_records``, ``expected``, :meth:`changed`. Stored records are compared
    without regard to order.

    .. versionadded:: 0.1
    """

    #: The records of one ``write_batch`` call are held until ``flush()``, and
    #: ``discard()`` drops them (false for a sink that stores each record at once).
    buffers: ClassVar[bool] = True
    #: ``flush_with(hook)`` calls the hook inside the batch's transaction, and a hook that
    #: raises rolls the batch back. When false it must flush and return ``False``.
    transactional: ClassVar[bool] = False
    #: What a record whose ``key`` is already stored (or repeated in its batch) does:
    #: ``"keep"`` both (append-only sinks), ``"update"`` the stored one (upsert: the last
    #: one wins), ``"reject"`` it with a ``SinkError`` (a unique key).
    duplicates: ClassVar[Literal["keep", "update", "reject"]] = "keep"
    #: What a record without its ``key`` field does: it is ``"stored"`` (and reads back as
    #: ``expected`` says), or it is an ``"error"``: a ``SinkError`` naming the field.
    missing_key: ClassVar[Literal["stored", "error"]] = "stored"

    def make_sink(self, tmp_path: Path) -> Sink:
        """A new sink. Sinks made in one test write to the same place (file, table, list)."""
        raise NotImplementedError(f"{self._label()} must implement make_sink(self, tmp_path)")

    def read_back(self, sink: Sink) -> list[Record]:
        """Everything durably stored where ``sink`` writes, read independently of it (for
        a database: committed rows, through a connection of your own); ``[]`` when the
        sink has not created its file or table yet."""
        raise NotImplementedError(f"{self._label()} must implement read_back(self, sink)")

    def changed(self, record: Record) -> Record:
        """``record`` with new values but the same key (default: its strings but the key's
        get ``" (changed)"`` appended)."""
        return {
            k: f"{v} (changed)" if k != self.key and isinstance(v, str) else v
            for k, v in record.items()
        }

    # -- helpers ----------------------------------------------------------------------------
    def _sink(self, tmp_path: Path) -> Sink:
        sink = self.make_sink(tmp_path)
        if not isinstance(sink, Sink):
            raise AssertionError(f"make_sink returned a {type(sink).__qualname__}, not a Sink")
        return sink

    def _stored(self, sink: Sink, records: list[Record], what: str) -> None:
        self._check(self.read_back(sink), records, what)

    def _thirds(self) -> tuple[list[Record], list[Record], list[Record]]:
        records = self.make_records(self.record_count)
        third = len(records) // 3
        return records[:third], records[third:2 * third], records[2 * third:]

    # -- writing ----------------------------------------------------------------------------
    def test_written_records_are_stored_exactly_once_by_flush(self, tmp_path: Path) -> None:
        records = self.make_records(self.record_count)
        sink = self._sink(tmp_path)
        sink.write(records[0])
        sink.write(Untyped(records[1], metadata={"note": "metadata is not stored"}))
        sink.write_batch([Untyped(records[2]), *records[3:6]])
        sink.write_batch(r for r in records[6:])  # any iterable, a generator too
        sink.flush()
        self._stored(sink, records, "after write/write_batch and flush()")
        sink.flush()
        self._stored(sink, records, "after a second flush()")
        sink.close()
        self._stored(sink, records, "after close()")

    def test_flushes_accumulate_without_duplicates(self, tmp_path: Path) -> None:
        first, second, third = self._thirds()
        sink = self._sink(tmp_path)
        sink.write_batch(first)
        sink.flush()
        sink.write_batch(second)
        sink.flush()
        sink.write_batch(third)
        sink.close()
        self._stored(sink, [*first, *second, *third], "three batches")

    def test_special_values_are_stored_intact(self, tmp_path: Path) -> None:
        records = self.special_records()
        sink = self._sink(tmp_path)
        sink.write_batch(records)
        sink.flush()
        self._stored(sink, records, "special values")
        sink.close()

    def test_an_empty_batch_stores_nothing(self, tmp_path: Path) -> None:
        sink = self._sink(tmp_path)
        sink.write_batch([])
        sink.write_batch(iter(()))
        sink.flush()
        calls: list[Any] = []

        def hook(handle: Any) -> bool:
            calls.append(handle)
            return True

        result = sink.flush_with(hook)
        if self.transactional and (len(calls) != 1 or result is not True):
            raise AssertionError(f"flush_with on an empty batch called the hook {len(calls)} "
                                 f"times and returned {result!r} (a transactional sink calls "
                                 "it once and returns its result)")
        if not self.transactional and (calls or result is not False):
            raise AssertionError(f"a non-transactional flush_with called the hook "
                                 f"{len(calls)} times and returned {result!r}")
        sink.close()
        self._stored(sink, [], "after empty batches")

    def test_discard_drops_unflushed_records(self, tmp_path: Path) -> None:
        if not self.buffers:
            raise unittest.SkipTest(f"{self._label()} declares buffers = False: it stores "
                                    "each record as it is written")
        first, second, _ = self._thirds()
        sink = self._sink(tmp_path)
        sink.write_batch(first)
        sink.flush()
        sink.write_batch(second)
        self._stored(sink, first, "before flush()")
        sink.discard()
        sink.flush()
        sink.close()
        self._stored(sink, first, "after discard(), flush() and close()")

    def test_close_flushes_and_is_idempotent(self, tmp_path: Path) -> None:
        first, second, _ = self._thirds()
        with self._sink(tmp_path) as sink:
            if not isinstance(sink, Sink):
                raise AssertionError("`with sink as s` must give the sink itself")
            sink.write_batch(first)
        self._stored(sink, first, "after leaving the with block")
        sink.close()
        other = self._sink(tmp_path)
        closes = _count_closes(other)
        other.write_batch(second)
        other.close()
        other.close()
        if len(closes) != 2:
            raise AssertionError("close() was not called as often as expected")
        self._stored(sink, [*first, *second], "after close() twice")
        never_written = self._sink(tmp_path)
        never_written.close()
        never_written.close()
        self._stored(sink, [*first, *second], "after closing an unused sink")

    # -- transactions -----------------------------------------------------------------------
    def test_flush_with_calls_the_hook_once_inside_the_transaction_or_never(
        self, tmp_path: Path
    ) -> None:
        first, second, _ = self._thirds()
        sink = self._sink(tmp_path)
        sink.write_batch(first)
        calls: list[Any] = []
        visible: list[list[Record]] = []

        def hook(handle: Any) -> bool:
            calls.append(handle)
            visible.append(_plain(self.read_back(sink)))
            return True

        result = sink.flush_with(hook)
        if not self.transactional:
            if calls or result is not False:
                raise AssertionError(f"{self._label()} declares transactional = False, but "
                                     f"flush_with called the hook {len(calls)} times and "
                                     f"returned {result!r} (expected: never, False)")
            self._stored(sink, first, "after flush_with")
            sink.close()
            return
        if len(calls) != 1 or result is not True:
            raise AssertionError(f"flush_with called the hook {len(calls)} times and returned "
                                 f"{result!r} (expected: once, the hook's True)")
        _check_same(visible[0], [], "what read_back sees while the hook runs (the batch must "
                    "not be committed before the hook returns)")
        self._stored(sink, first, "after flush_with")
        sink.write_batch(second)
        result = sink.flush_with(lambda handle: False)
        if result is not False:
            raise AssertionError(f"flush_with returned {result!r}, not its hook's False")
        sink.close()
        self._stored(sink, [*first, *second], "after a second flush_with")

    def test_a_failing_flush_with_hook_leaves_nothing_of_the_batch_stored(
        self, tmp_path: Path
    ) -> None:
        first, second, _ = self._thirds()
        sink = self._sink(tmp_path)
        sink.write_batch(first)
        sink.flush()
        sink.write_batch(second)
        error = _HookFailed("injected by SinkContract")
        calls: list[Any] = []

        def hook(handle: Any) -> bool:
            calls.append(handle)
            raise error

        if not self.transactional:
            if sink.flush_with(hook) is not False or calls:
                raise AssertionError("a non-transactional flush_with must flush and return "
                                     "False without calling the hook")
            sink.close()
            self._stored(sink, [*first, *second], "after flush_with")
            return
        try:
            sink.flush_with(hook)
        except Exception as exc:
            if not _caused_by(exc, error):
                raise AssertionError(f"flush_with raised {exc!r}, not the hook's error (nor an "
                                     "error caused by it)") from exc
        else:
            raise AssertionError("flush_with swallowed the hook's error")
        self._stored(sink, first, "after a hook failed (nothing of its batch may be stored)")
        sink.discard()  # what a failed run does before closing
        sink.close()
        self._stored(sink, first, "after discard() and close()")

    # -- keys -------------------------------------------------------------------------------
    def test_duplicate_keys_follow_the_sinks_policy(self, tmp_path: Path) -> None:
        records = self.make_records(6)
        first, fresh = records[:3], records[3:]
        batch = [self.changed(first[1]), fresh[0], fresh[1], self.changed(fresh[1]), fresh[2]]
        sink = self._sink(tmp_path)
        sink.write_batch(first)
        sink.flush()
        if self.duplicates == "reject":
            sink.write_batch(batch)
            try:
                sink.flush()
            except SinkError:
                pass
            else:
                raise AssertionError(f"{self._label()} declares duplicates = 'reject', but a "
                                     "batch with taken keys was stored without a SinkError")
            if self.transactional:
                self._stored(sink, first, "after a batch with duplicate keys was rejected")
            else:
                stored = Counter(map(_canonical, _plain(self.read_back(sink))))
                if Counter(map(_canonical, self.expected(first))) - stored:
                    raise AssertionError("a rejected duplicate changed the stored records")
            sink.discard()
            sink.close()
            return
        sink.write_batch(batch)
        sink.flush()
        if self.duplicates == "keep":
            sink.close()
            self._stored(sink, [*first, *batch], "duplicates kept")
            return
        latest = _last_per_key([*first, *batch], self.key)
        self._stored(sink, latest, "upserts (the last record of a key wins)")
        sink.write_batch(batch)
        sink.flush()
        sink.close()
        self._stored(sink, latest, "the same upserts applied twice")

    def test_a_record_missing_a_field_is_stored_as_expected(self, tmp_path: Path) -> None:
        full, partial = self.make_records(2)
        lacking = {self.key: partial[self.key]}
        sink = self._sink(tmp_path)
        sink.write_batch([full, lacking])
        sink.close()
        self._stored(sink, [full, lacking], "a record lacking a field")

    def test_a_record_missing_its_key_follows_the_sinks_policy(self, tmp_path: Path) -> None:
        record = {k: v for k, v in self.make_records(1)[0].items() if k != self.key}
        sink = self._sink(tmp_path)
        if self.missing_key == "stored":
            sink.write_batch([record])
            sink.close()
            self._stored(sink, [record], f"a record without {self.key!r}")
            return
        try:
            sink.write_batch([record])
            sink.flush()
        except SinkError as exc:
            if self.key not in str(exc):
                raise AssertionError(f"the error for a record without {self.key!r} does not "
                                     f"name the field: {exc}") from exc
        except Exception as exc:
            raise AssertionError(f"a record without {self.key!r} raised "
                                 f"{type(exc).__qualname__}: {exc} (expected: a SinkError "
                                 "naming the field)") from exc
        else:
            raise AssertionError(f"{self._label()} declares missing_key = 'error', but a "
                                 f"record without {self.key!r} was accepted")
        sink.discard()
        sink.close()
        self._stored(sink, [], f"after a record without {self.key!r} was refused")

    # -- specs ------------------------------------------------------------------------------
    def test_to_dict_from_dict_and_clone_write_to_the_same_place(self, tmp_path: Path) -> None:
        sink = self._sink(tmp_path)
        spec = sink.to_dict()
        stored = _json_round_trip(spec, "to_dict()")
        if set(spec) != {"type", "config"} or stored != spec:
            raise AssertionError(f"to_dict() is not a JSON-safe type/config spec: {spec!r}")
        rebuilt = Sink.from_dict(stored)
        clone = sink.clone()
        for other, how in ((rebuilt, "from_dict()"), (clone, "clone()")):
            if other is sink or type(other) is not type(sink):
                raise AssertionError(f"{how} must build a new {type(sink).__qualname__}")
            if other.to_dict() != spec:
                raise AssertionError(f"the sink built by {how} has the spec {other.to_dict()!r}")
        first, second, third = self._thirds()
        for writer, batch in ((sink, first), (rebuilt, second), (clone, third)):
            writer.write_batch(batch)
            writer.flush()
        for writer in (sink, rebuilt, clone):
            writer.close()
        self._stored(sink, [*first, *second, *third], "written through the original, a "
                     "sink rebuilt from its spec and a clone")
