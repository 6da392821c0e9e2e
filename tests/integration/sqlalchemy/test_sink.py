"""SqlAlchemySink on SQLite, PostgreSQL and MariaDB: buffering, upserts, transactions, records
refused by the database or by validators."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow.connectors.sqlalchemy import SqlAlchemySink
from active_data_flow.errors import RecordRejected, SinkError
from tests.integration.sqlalchemy.conftest import insert, rows
from tests.integration.sqlalchemy.models import EVENTS, Contact, Person, Reading, Ticket

T0 = dt.datetime(2024, 3, 1, 12, 0, 0)


def contacts(ids: range | list[int], **fields: Any) -> list[dict[str, Any]]:
    return [{"id": i, "email": f"c{i}@example.com", "name": f"C{i}", **fields} for i in ids]


def emails(engine: sa.Engine) -> list[str]:
    return [r[0] for r in rows(engine, Contact, "email")]


class Rejections(list[RecordRejected]):
    """An ``on_reject`` handler, as a flow with on_error='skip' installs one."""

    def __call__(self, error: RecordRejected) -> None:
        self.append(error)


def test_a_flush_writes_everything_buffered_in_one_transaction(engine: sa.Engine) -> None:
    sink = SqlAlchemySink(model=Contact, database=engine)
    sink.write_batch(contacts(range(1, 2501)))
    assert rows(engine, Contact) == []  # buffered, not yet written
    sink.flush()
    stored = rows(engine, Contact)
    assert len(stored) == 2500
    # Scalar Python-side defaults of columns the records lack are applied.
    assert stored[0] == (1, "c1@example.com", "C1", Decimal("0.00"), None, "import")
    sink.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_write_that_finds_batch_size_records_waiting_flushes_them_first(
    engine: sa.Engine,
) -> None:
    with SqlAlchemySink(model=Contact, database=engine, batch_size=3) as sink:
        for record in contacts(range(1, 4)):
            sink.write(record)
        assert emails(engine) == []
        sink.write(contacts([4])[0])
        assert len(emails(engine)) == 3
    assert len(emails(engine)) == 4  # close() flushed the rest


def test_discard_drops_what_was_not_flushed(engine: sa.Engine) -> None:
    sink = SqlAlchemySink(model=Contact, database=engine)
    sink.write_batch(contacts(range(1, 4)))
    sink.discard()
    sink.close()
    assert emails(engine) == []


def test_records_may_differ_in_fields_and_use_attribute_names(engine: sa.Engine) -> None:
    with SqlAlchemySink(model=Contact, database=engine) as sink:
        sink.write_batch([*contacts([1]), {"id": 2, "email": "c2@example.com"},
                          {"id": 3, "email": "c3@example.com", "score": Decimal("1.5")}])
    assert rows(engine, Contact, "id", "name", "score") == [
        (1, "C1", Decimal("0.00")), (2, None, Decimal("0.00")), (3, None, Decimal("1.50")),
    ]
    # As many fields, but not the same ones: each group is written with its own columns.
    with SqlAlchemySink(model=Contact, database=engine, batch_size=2) as sink:
        sink.write_batch([{"id": 4, "email": "c4@example.com", "name": "N4"},
                          {"id": 5, "email": "c5@example.com", "score": Decimal(5)},
                          {"id": 6, "email": "c6@example.com", "name": "N6"}])
    assert rows(engine, Contact, "id", "name", "score")[3:] == [
        (4, "N4", Decimal("0.00")), (5, None, Decimal("5.00")), (6, "N6", Decimal("0.00")),
    ]
    # Attribute names that differ from column names ('celsius' is column value_c).
    readings = [{"sensor": "s", "taken_at": T0 + dt.timedelta(seconds=i), "celsius": i / 2}
                for i in range(3)]
    with SqlAlchemySink(model=Reading, database=engine) as sink:
        sink.write_batch(readings)
    assert [r[2] for r in rows(engine, Reading)] == [0.0, 0.5, 1.0]
    with SqlAlchemySink(model=Reading, database=engine, upsert=True) as sink:
        sink.write_batch([readings[1] | {"celsius": 9.5}])
    assert [r[2] for r in rows(engine, Reading)] == [0.0, 9.5, 1.0]


def test_callable_python_defaults_are_applied(engine: sa.Engine) -> None:
    with SqlAlchemySink(model=Ticket, database=engine) as sink:
        sink.write_batch([{"id": i, "title": f"t{i}"} for i in range(1, 4)])
    codes = [r[1] for r in rows(engine, Ticket)]
    assert all(code.startswith("T-") for code in codes)
    assert len(set(codes)) == 3


def test_fields_that_are_not_columns_are_a_sink_error(engine: sa.Engine) -> None:
    sink = SqlAlchemySink(model=Contact, database=engine)
    sink.write({"id": 1, "email": "a@b.c", "nickname": "x"})
    with pytest.raises(SinkError, match=r"record 1 has field.* 'nickname' that are not columns"):
        sink.flush()
    sink.discard()
    sink.close()


def test_upsert_by_unique_key_updates_only_the_chosen_columns(engine: sa.Engine) -> None:
    insert(engine, Contact, contacts(range(1, 4), score=Decimal(1)))
    incoming = [
        {"id": 1, "email": "c1@example.com", "name": "new1", "score": Decimal(5)},
        {"id": 9, "email": "c9@example.com", "name": "new9", "score": Decimal(9)},
        {"id": 2, "email": "c2@example.com", "name": "first", "score": Decimal(5)},
        {"id": 2, "email": "c2@example.com", "name": "last", "score": Decimal(5)},
    ]
    with SqlAlchemySink(model=Contact, database=engine, upsert=True, unique_by="email",
                        update_only=["name"]) as sink:
        sink.write_batch(incoming)
    assert rows(engine, Contact, "id", "name", "score") == [
        (1, "new1", Decimal("1.00")),  # only `name` was updated
        (2, "last", Decimal("1.00")),  # the last record of a key wins, as one by one would
        (3, "C3", Decimal("1.00")),
        (9, "new9", Decimal("9.00")),  # inserted with every field
    ]
    # update_only=[]: insert what is new, leave existing rows as they are.
    with SqlAlchemySink(model=Contact, database=engine, upsert=True, update_only=[]) as sink:
        sink.write_batch(contacts([1, 4], name="ignored?"))
    assert rows(engine, Contact, "id", "name") == [
        (1, "new1"), (2, "last"), (3, "C3"), (4, "ignored?"), (9, "new9")
    ]
    # By default the primary key is the unique key and every other written column updates.
    with SqlAlchemySink(model=Contact, database=engine, upsert=True) as sink:
        sink.write_batch(contacts([3], score=Decimal(7)))
    assert rows(engine, Contact, "id", "name", "score")[2] == (3, "C3", Decimal("7.00"))


def test_an_upserted_batch_applied_twice_equals_once(engine: sa.Engine) -> None:
    batch = contacts(range(1, 50), score=Decimal(3))
    for _ in range(2):
        with SqlAlchemySink(model=Contact, database=engine, upsert=True) as sink:
            sink.write_batch(batch)
        assert len(rows(engine, Contact)) == 49


def test_a_unique_violation_mid_batch_writes_nothing_and_names_the_record(
    engine: sa.Engine,
) -> None:
    insert(engine, Contact, contacts([500]))
    taken = {"id": 301, "email": "c500@example.com"}
    batch = [*contacts(range(1, 301)), taken, *contacts(range(302, 601))]
    sink = SqlAlchemySink(model=Contact, database=engine, batch_size=100)
    sink.write_batch(batch)
    with pytest.raises(RecordRejected) as err:
        sink.flush()
    assert err.value.key == 301
    assert err.value.record == {"id": 301, "email": "c500@example.com"}
    assert emails(engine) == ["c500@example.com"]  # nothing of the batch was kept
    sink.discard()
    sink.close()


def test_under_a_skip_policy_refused_records_are_isolated_and_the_rest_committed(
    engine: sa.Engine,
) -> None:
    insert(engine, Contact, contacts([7]))
    rejected = Rejections()
    sink = SqlAlchemySink(model=Contact, database=engine, batch_size=50)
    sink.on_reject = rejected
    batch = contacts(range(1, 121))
    batch[99] = {"id": 100, "email": "c7@example.com"}  # a taken email
    sink.write_batch(batch)
    sink.close()
    assert [(e.key, type(e).__name__) for e in rejected] == [
        (7, "RecordRejected"), (100, "RecordRejected")
    ]
    assert len(emails(engine)) == 1 + 120 - 2


def test_values_that_do_not_fit_their_column_are_refused_records(
    server_engine: sa.Engine,
) -> None:
    engine = server_engine  # SQLite does not enforce VARCHAR lengths
    rejected = Rejections()
    sink = SqlAlchemySink(model=Contact, database=engine)
    sink.on_reject = rejected
    sink.write_batch([*contacts([1]), {"id": 2, "email": "c2@example.com", "name": "x" * 50}])
    sink.close()
    assert [e.key for e in rejected] == [2]
    assert emails(engine) == ["c1@example.com"]


def test_transaction_batch_size_commits_every_n_records(engine: sa.Engine) -> None:
    insert(engine, Contact, contacts([25]))
    sink = SqlAlchemySink(model=Contact, database=engine, batch_size=4,
                          transaction_batch_size=10)
    sink.write_batch([*contacts(range(1, 25)), {"id": 99, "email": "c25@example.com"}])
    with pytest.raises(RecordRejected):
        sink.flush()
    # Two transactions of ten committed; the third (21-24 and the bad record) rolled back.
    assert [r[0] for r in rows(engine, Contact, "id")] == [*range(1, 21), 25]
    sink.discard()
    sink.close()


def test_without_a_transaction_each_statement_commits_on_its_own(engine: sa.Engine) -> None:
    insert(engine, Contact, contacts([9]))
    sink = SqlAlchemySink(model=Contact, database=engine, batch_size=4, transaction=False)
    sink.write_batch([*contacts(range(1, 9)), {"id": 10, "email": "c9@example.com"}])
    with pytest.raises(RecordRejected):
        sink.flush()
    assert [r[0] for r in rows(engine, Contact, "id")] == [*range(1, 9), 9]
    sink.discard()  # the refused statement's records stay buffered until discarded
    assert sink.flush_with(lambda conn: True) is False  # no transaction to share
    sink.close()


def test_flush_with_runs_the_hook_inside_the_batch_transaction(engine: sa.Engine) -> None:
    def save_cursor(conn: sa.Connection) -> bool:
        conn.execute(sa.insert(Person), {
            "id": 1, "email": "cursor@x", "name": "cursor", "score": 0, "updated_at": T0})
        return True

    sink = SqlAlchemySink(model=Contact, database=engine)
    sink.write_batch(contacts(range(1, 4)))
    assert sink.flush_with(save_cursor) is True
    assert len(emails(engine)) == 3
    assert len(rows(engine, Person)) == 1

    def fail(conn: sa.Connection) -> bool:
        raise RuntimeError("the run's claim was lost")

    sink.write_batch(contacts(range(4, 7)))
    with pytest.raises(RuntimeError, match="claim was lost"):
        sink.flush_with(fail)
    assert len(emails(engine)) == 3  # the batch went down with the hook
    # An empty batch still runs the hook (the cursor moves even when nothing was written).
    sink.discard()
    assert sink.flush_with(lambda conn: conn.execute(sa.text("SELECT 1")).scalar() == 1)
    sink.close()


def test_the_single_record_path_runs_validators_and_mapper_events(engine: sa.Engine) -> None:
    rejected = Rejections()
    sink = SqlAlchemySink(model=Contact, database=engine, batch_size=1)
    sink.on_reject = rejected
    sink.write_batch([
        {"id": 1, "email": "ADA@Example.com"},
        {"id": 2, "email": "not-an-email"},  # the validator refuses it
        {"id": 3, "email": "ada@example.com"},  # a duplicate once lowercased
        {"id": 4, "email": "Bob@Example.com"},
    ])
    sink.close()
    assert emails(engine) == ["ada@example.com", "bob@example.com"]
    assert [(e.key, "ValueError" in str(e)) for e in rejected] == [(2, True), (3, False)]
    assert ("before_insert", "ada@example.com") in EVENTS
    assert ("after_insert", "bob@example.com") in EVENTS


def test_under_the_fail_policy_an_invalid_record_rolls_the_batch_back(engine: sa.Engine) -> None:
    sink = SqlAlchemySink(model=Contact, database=engine, batch_size=1)
    sink.write_batch([{"id": 1, "email": "a@b.c"}, {"id": 2, "email": "nope"}])
    with pytest.raises(RecordRejected, match="record 2 rejected: ValueError: invalid email"):
        sink.flush()
    assert emails(engine) == []
    sink.discard()
    sink.close()


def test_skip_validations_and_skip_callbacks(engine: sa.Engine) -> None:
    with SqlAlchemySink(model=Contact, database=engine, batch_size=1,
                        skip_validations=True) as sink:
        sink.write({"id": 1, "email": "NOT-VALIDATED"})
    assert emails(engine) == ["NOT-VALIDATED"]
    assert ("before_insert", "NOT-VALIDATED") in EVENTS  # events still fire
    EVENTS.clear()
    with SqlAlchemySink(model=Contact, database=engine, batch_size=1,
                        skip_callbacks=True) as sink:
        sink.write({"id": 2, "email": "Validated@X.org"})
    assert emails(engine)[1] == "validated@x.org"  # the validator ran
    assert EVENTS == []  # no mapper event fired
    with SqlAlchemySink(model=Contact, database=engine, batch_size=1, skip_callbacks=True,
                        skip_validations=True) as sink:
        sink.write({"id": 3, "email": "RAW"})
    assert emails(engine)[2] == "RAW"
    assert EVENTS == []


def test_single_record_upserts_load_and_update_through_the_orm(engine: sa.Engine) -> None:
    insert(engine, Contact, contacts([1, 2]))
    with SqlAlchemySink(model=Contact, database=engine, batch_size=1, upsert=True,
                        unique_by="email", update_only=["name"]) as sink:
        sink.write_batch([{"id": 50, "email": "c1@example.com", "name": "renamed"},
                          {"id": 3, "email": "New@Example.com", "name": "new"}])
    assert rows(engine, Contact, "id", "email", "name") == [
        (1, "c1@example.com", "renamed"), (2, "c2@example.com", "C2"),
        (3, "new@example.com", "new"),
    ]
    assert ("before_update", "c1@example.com") in EVENTS
    assert ("before_insert", "new@example.com") in EVENTS
