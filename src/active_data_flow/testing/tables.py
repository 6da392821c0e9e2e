"""Contracts of connectors over a relational table (the SQLAlchemy and Django families).

Beyond :class:`SourceContract` / :class:`SinkContract`, a table connector takes the seed's
ActiveRecord options; these suites check that they mean the same thing in every family.
Subclass them in a pytest module and implement the hooks on two tables:

* ``people`` (read): ``id`` (integer key, given), ``email`` (unique), ``name`` (nullable
  text), ``score`` (decimal), ``updated_at`` (not null date-time);
* ``contacts`` (written): ``id`` (integer key, given), ``email`` (unique), ``name``
  (nullable text), ``score`` (decimal).

Options are passed in the shared vocabulary (``where`` with equality on a field,
``order_by``, ``limit``, ``select``, ``cursor_column``, ``lag``, ``batch_size``; ``upsert``,
``unique_by``, ``update_only``, ``transaction_batch_size``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar

from active_data_flow.connector import Sink, Source
from active_data_flow.errors import ConfigurationError, RecordRejected
from active_data_flow.message import Message

__all__ = ["TableSinkContract", "TableSourceContract"]

Record = dict[str, Any]


class TableSourceContract:
    """What a table source's options mean (subclass it in a pytest module)."""

    def fill_people(self, rows: list[Record]) -> None:
        """Replace the ``people`` rows with ``rows`` (committed)."""
        raise NotImplementedError

    def people_source(self, **options: Any) -> Source:
        """A source over ``people`` with ``options``."""
        raise NotImplementedError

    def timestamp(self, minute: int) -> Any:
        """A value of ``updated_at``: ``minute`` minutes after 2024-01-01 00:00 (default:
        naive; override for a family storing aware date-times)."""
        return dt.datetime(2024, 1, 1) + dt.timedelta(minutes=minute)

    # -- helpers -------------------------------------------------------------------------
    def _people(self, count: int, *, tie_every: int = 1) -> list[Record]:
        return [{"id": i, "email": f"p{i}@example.com", "name": "even" if i % 2 == 0 else "odd",
                 "score": Decimal(i), "updated_at": self.timestamp(i // tie_every)}
                for i in range(1, count + 1)]

    def _read(self, source: Source, cursor: Any = None) -> list[Message]:
        try:
            return list(source.read(cursor))
        finally:
            source.close()

    @staticmethod
    def _ids(messages: list[Message]) -> list[int]:
        return [m["id"] for m in messages]

    # -- tests ---------------------------------------------------------------------------
    def test_where_filters_on_a_fields_value(self) -> None:
        self.fill_people(self._people(9))
        got = self._ids(self._read(self.people_source(where={"name": "even"}, batch_size=2)))
        assert got == [2, 4, 6, 8]

    def test_order_by_reads_in_that_order(self) -> None:
        self.fill_people(self._people(7))
        got = self._ids(self._read(self.people_source(order_by=["-id"], batch_size=3)))
        assert got == [7, 6, 5, 4, 3, 2, 1]

    def test_limit_caps_a_read_across_pages(self) -> None:
        self.fill_people(self._people(10))
        source = self.people_source(limit=7, batch_size=3)
        assert self._ids(self._read(source)) == [1, 2, 3, 4, 5, 6, 7]
        assert source.count() == 7

    def test_select_keeps_the_chosen_fields_and_the_key(self) -> None:
        self.fill_people(self._people(3))
        got = self._read(self.people_source(select=["email"]))
        assert [dict(m) for m in got] == [{"email": f"p{i}@example.com", "id": i}
                                         for i in (1, 2, 3)]

    def test_a_composite_cursor_resumes_after_ties_and_sees_new_rows(self) -> None:
        rows = self._people(12, tie_every=3)  # three rows share each updated_at
        self.fill_people(rows)
        source = self.people_source(cursor_column=["updated_at", "id"], batch_size=2)
        first = self._read(source)
        assert self._ids(first) == list(range(1, 13))
        position = first[3].position
        assert isinstance(position, list)
        assert len(position) == 2
        assert self._ids(self._read(self.people_source(
            cursor_column=["updated_at", "id"], batch_size=2), position)) == list(range(5, 13))
        self.fill_people([*rows, {"id": 13, "email": "late@example.com", "name": None,
                                  "score": Decimal(0), "updated_at": self.timestamp(99)}])
        again = self._read(self.people_source(cursor_column=["updated_at", "id"]),
                           first[-1].position)
        assert self._ids(again) == [13]

    def test_a_single_cursor_column_is_completed_with_the_key(self) -> None:
        self.fill_people(self._people(6, tie_every=2))
        first = self._read(self.people_source(cursor_column="updated_at", batch_size=1))
        assert self._ids(first) == [1, 2, 3, 4, 5, 6]
        rest = self._read(self.people_source(cursor_column="updated_at", batch_size=1),
                          first[1].position)
        assert self._ids(rest) == [3, 4, 5, 6]

    def test_lag_reads_the_window_again_without_moving_the_cursor_back(self) -> None:
        rows = self._people(5)  # updated_at: minutes 1..5
        self.fill_people(rows)
        source = self.people_source(cursor_column="updated_at", lag=dt.timedelta(minutes=2))
        first = self._read(source)
        cursor = first[-1].position
        # A row committed late, with a time inside the window, is read on the next run.
        self.fill_people([*rows, {"id": 6, "email": "late@example.com", "name": None,
                                  "score": Decimal(0), "updated_at": self.timestamp(4)}])
        again = self._read(self.people_source(cursor_column="updated_at",
                                              lag=dt.timedelta(minutes=2)), cursor)
        assert sorted(self._ids(again)) == [3, 4, 5, 6]
        assert all(m.position == cursor for m in again)

    def test_count_agrees_with_a_full_read(self) -> None:
        self.fill_people(self._people(8))
        source = self.people_source(where={"name": "odd"})
        assert source.count() == len(self._read(source)) == 4

    def test_unknown_fields_and_nullable_cursors_are_configuration_errors(self) -> None:
        for options, option in (({"select": ["nope"]}, "select"),
                                ({"cursor_column": ["nope"]}, "cursor_column"),
                                ({"cursor_column": ["name"]}, "cursor_column"),
                                ({"order_by": ["id"], "cursor_column": ["updated_at"]},
                                 "order_by")):
            try:
                self.people_source(**options)
            except ConfigurationError as exc:
                if exc.option != option:
                    raise AssertionError(f"{options}: the error names {exc.option!r}, not "
                                         f"{option!r}: {exc}") from exc
            else:
                raise AssertionError(f"{options} was accepted")


class TableSinkContract:
    """What a table sink's options mean (subclass it in a pytest module).

    ``single_record`` runs every test on the single-record path (``batch_size=1``).
    """

    single_record: ClassVar[bool] = False

    def fill_contacts(self, rows: list[Record]) -> None:
        """Replace the ``contacts`` rows with ``rows`` (committed)."""
        raise NotImplementedError

    def contacts(self) -> list[Record]:
        """The committed ``contacts`` rows by ``id`` (``id``, ``email``, ``name``,
        ``score``), through a connection of the test's own."""
        raise NotImplementedError

    def contact_sink(self, **options: Any) -> Sink:
        """A sink writing ``contacts`` with ``options``."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------
    def _sink(self, **options: Any) -> Sink:
        if self.single_record:
            options["batch_size"] = 1
        return self.contact_sink(**options)

    @staticmethod
    def _contact(i: int, name: str = "n", score: int = 0, email: str | None = None) -> Record:
        return {"id": i, "email": email or f"c{i}@example.com", "name": name,
                "score": Decimal(score)}

    def _rows(self) -> list[tuple[Any, ...]]:
        return [(r["id"], r["email"], r["name"], Decimal(r["score"]))
                for r in sorted(self.contacts(), key=lambda r: r["id"])]

    # -- tests ---------------------------------------------------------------------------
    def test_upsert_by_a_unique_field_updates_the_matching_row(self) -> None:
        self.fill_contacts([self._contact(1, "old", 1), self._contact(2, "two", 2)])
        sink = self._sink(upsert=True, unique_by="email")
        sink.write_batch([self._contact(1, "new", 5), self._contact(3, "three", 3)])
        sink.close()
        assert self._rows() == [(1, "c1@example.com", "new", 5), (2, "c2@example.com", "two", 2),
                                (3, "c3@example.com", "three", 3)]

    def test_update_only_limits_what_an_upsert_changes(self) -> None:
        self.fill_contacts([self._contact(1, "old", 1)])
        sink = self._sink(upsert=True, update_only=["name"])
        sink.write_batch([self._contact(1, "new", 9), self._contact(2, "two", 2)])
        sink.close()
        assert self._rows() == [(1, "c1@example.com", "new", 1), (2, "c2@example.com", "two", 2)]

    def test_an_empty_update_only_leaves_existing_rows_untouched(self) -> None:
        self.fill_contacts([self._contact(1, "old", 1)])
        sink = self._sink(upsert=True, update_only=[])
        sink.write_batch([self._contact(1, "new", 9), self._contact(2, "two", 2)])
        sink.close()
        assert self._rows() == [(1, "c1@example.com", "old", 1), (2, "c2@example.com", "two", 2)]

    def test_a_refused_record_is_isolated_under_on_reject(self) -> None:
        self.fill_contacts([self._contact(1)])
        rejected: list[RecordRejected] = []
        sink = self._sink(batch_size=10) if not self.single_record else self._sink()
        sink.on_reject = rejected.append
        sink.write_batch([self._contact(2), self._contact(3, email="c1@example.com"),
                          self._contact(4)])
        sink.close()
        assert [r[0] for r in self._rows()] == [1, 2, 4]
        assert [r.key for r in rejected] == [3]
        assert "3" in str(rejected[0])
        assert rejected[0].record is not None

    def test_a_refused_record_rolls_the_whole_flush_back_without_on_reject(self) -> None:
        self.fill_contacts([self._contact(1)])
        sink = self._sink()
        sink.write_batch([self._contact(2), self._contact(3, email="c1@example.com")])
        try:
            sink.flush()
        except RecordRejected as exc:
            if exc.key != 3:
                raise AssertionError(f"the rejection names {exc.key!r}, not 3") from exc
        else:
            raise AssertionError("a duplicate email was accepted")
        sink.discard()
        sink.close()
        assert [r[0] for r in self._rows()] == [1]

    def test_transaction_batch_size_commits_slice_by_slice(self) -> None:
        self.fill_contacts([self._contact(1)])
        sink = self._sink(transaction_batch_size=2)
        sink.write_batch([self._contact(2), self._contact(3), self._contact(4),
                          self._contact(5, email="c1@example.com")])
        try:
            sink.flush()
        except RecordRejected:
            pass
        else:
            raise AssertionError("a duplicate email was accepted")
        sink.discard()
        sink.close()
        assert [r[0] for r in self._rows()] == [1, 2, 3]

    def test_options_are_checked_against_the_model(self) -> None:
        for options, option in (({"unique_by": ["email"]}, "unique_by"),
                                ({"update_only": ["name"]}, "update_only"),
                                ({"upsert": True, "unique_by": ["name"]}, "unique_by"),
                                ({"transaction": False, "transaction_batch_size": 5},
                                 "transaction_batch_size")):
            try:
                self._sink(**options)
            except ConfigurationError as exc:
                if exc.option != option:
                    raise AssertionError(f"{options}: the error names {exc.option!r}, not "
                                         f"{option!r}: {exc}") from exc
            else:
                raise AssertionError(f"{options} was accepted")
