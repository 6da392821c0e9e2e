"""DjangoSource / DjangoSink behaviour beyond the shared contracts, on SQLite, PostgreSQL and
MariaDB: validators and signals, includes and their query counts, paging, models and
aliases from stored specs, and the cursor committed in the sink's transaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from django.db import connections
from django.test.utils import CaptureQueriesContext

from active_data_flow import DataFlow, Sink, Source
from active_data_flow.contrib.django.connectors import DjangoSink, DjangoSource
from active_data_flow.errors import ConfigurationError, RecordRejected
from active_data_flow.registry import untrusted_specs
from tests.contrib.django.testapp.models import (
    SIGNALS,
    Customer,
    Order,
    ReportCustomer,
    Tag,
)

UTC = dt.UTC


def customers(alias: str, count: int) -> list[Customer]:
    made = Customer.objects.using(alias).bulk_create([
        Customer(id=i, email=f"u{i}@example.com", name=f"user {i}",
                 updated_at=dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=i))
        for i in range(1, count + 1)])
    return list(made)


def report(i: int, email: str | None = None) -> dict[str, Any]:
    return {"id": i, "email": email or f"r{i}@example.com", "display_name": f"R {i}",
            "visits": i}


def selects(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries
            if q["sql"].lstrip().upper().startswith("SELECT")]


# -- sink: the single-record path and the bulk path ----------------------------------------
def test_the_single_record_path_runs_validators_and_sends_signals(alias: str) -> None:
    SIGNALS.clear()
    rejected: list[RecordRejected] = []
    sink = DjangoSink(model=ReportCustomer, database=alias, batch_size=1)
    sink.on_reject = rejected.append
    sink.write_batch([report(1), report(2, email="not-an-email"), report(3)])
    sink.close()
    assert list(ReportCustomer.objects.using(alias).values_list("id", flat=True)
                .order_by("id")) == [1, 3]
    assert [r.key for r in rejected] == [2]
    assert "email" in str(rejected[0])
    assert "invalid email" in str(rejected[0])
    assert SIGNALS == [("pre_save", 1), ("post_save", 1), ("pre_save", 3), ("post_save", 3)]


def test_the_bulk_path_skips_validators_and_signals(alias: str) -> None:
    SIGNALS.clear()
    sink = DjangoSink(model=ReportCustomer, database=alias, batch_size=10)
    sink.write_batch([report(1), report(2, email="not-an-email")])
    sink.close()
    assert ReportCustomer.objects.using(alias).count() == 2
    assert SIGNALS == []


def test_skip_validations_and_skip_callbacks_on_the_single_record_path(alias: str) -> None:
    SIGNALS.clear()
    sink = DjangoSink(model=ReportCustomer, database=alias, batch_size=1,
                      skip_validations=True, skip_callbacks=True)
    sink.write_batch([report(1, email="no-at-sign")])
    sink.close()
    assert ReportCustomer.objects.using(alias).get().email == "no-at-sign"
    assert SIGNALS == []
    upsert = DjangoSink(model=ReportCustomer, database=alias, batch_size=1, upsert=True,
                        skip_callbacks=True)
    upsert.write_batch([{**report(1), "display_name": "changed"}])
    upsert.close()
    assert ReportCustomer.objects.using(alias).get().display_name == "changed"
    assert SIGNALS == []


def test_upsert_on_a_composite_unique_constraint(alias: str) -> None:
    sink = DjangoSink(model=ReportCustomer, database=alias, upsert=True,
                      unique_by=["display_name", "visits"], update_only=["email"])
    sink.write_batch([report(1), report(2)])
    sink.flush()
    sink.write_batch([{**report(1), "email": "new@example.com"}])
    sink.close()
    rows = ReportCustomer.objects.using(alias).order_by("id").values_list("id", "email")
    assert list(rows) == [(1, "new@example.com"), (2, "r2@example.com")]


def test_a_failed_flush_rolls_back_and_the_next_one_writes(alias: str) -> None:
    sink = DjangoSink(model=ReportCustomer, database=alias, batch_size=2)
    sink.write_batch([report(1), report(2), report(3), report(4, email="r1@example.com")])
    with pytest.raises(RecordRejected, match="record 4 rejected"):
        sink.flush()
    assert ReportCustomer.objects.using(alias).count() == 0
    sink.discard()
    sink.write_batch([report(5)])
    sink.close()
    assert ReportCustomer.objects.using(alias).count() == 1


def test_an_unknown_field_names_the_field_and_the_record(alias: str) -> None:
    sink = DjangoSink(model=ReportCustomer, database=alias)
    sink.write_batch([{**report(1), "colour": "red"}])
    with pytest.raises(Exception, match=r"record 1 has field\(s\) 'colour'"):
        sink.flush()
    sink.discard()


# -- source: includes, paging, lookups -------------------------------------------------
def test_includes_load_relations_in_a_fixed_number_of_queries(alias: str) -> None:
    people = customers(alias, 6)
    tags = Tag.objects.using(alias).bulk_create([Tag(id=1, name="a"), Tag(id=2, name="b")])
    for c in people:
        c.tags.set(tags[: c.pk % 3])
        for n in range(c.pk % 3):
            Order.objects.using(alias).create(customer=c, total=Decimal(n + 1),
                                             placed_at=c.updated_at)
    source = DjangoSource(model=Customer, database=alias, includes=["orders", "tags"],
                          batch_size=3, readonly=False)
    with CaptureQueriesContext(connections[alias]) as context:
        got = list(source.read())
    # Two pages (the second one full, so a third, empty, page is asked for): one query for
    # the page and one per prefetched relation, whatever the number of rows.
    assert len(selects(context)) == 2 * 3 + 1
    assert [len(m["orders"]) for m in got] == [1, 2, 0, 1, 2, 0]
    assert [len(m["tags"]) for m in got] == [1, 2, 0, 1, 2, 0]
    assert got[1]["orders"][0]["customer_id"] == 2

    orders = DjangoSource(model=Order, database=alias, includes=["customer"], batch_size=100,
                          readonly=False)
    with CaptureQueriesContext(connections[alias]) as context:
        rows = list(orders.read())
    assert len(selects(context)) == 1  # select_related: one join
    assert {m["customer"]["email"] for m in rows} == {
        f"u{i}@example.com" for i in (1, 2, 4, 5)}


def test_pages_are_keyset_queries_of_batch_size(alias: str) -> None:
    customers(alias, 25)
    source = DjangoSource(model=Customer, database=alias, batch_size=10, readonly=False)
    with CaptureQueriesContext(connections[alias]) as context:
        assert len(list(source.read())) == 25
    pages = selects(context)
    assert len(pages) == 3
    assert all("OFFSET" not in sql.upper() for sql in pages)


def test_a_readonly_read_sees_the_rows(alias: str) -> None:
    customers(alias, 5)
    source = DjangoSource(model=Customer, database=alias, batch_size=2, readonly=True)
    assert [m["id"] for m in source.read()] == [1, 2, 3, 4, 5]
    Customer.objects.using(alias).filter(pk=1).update(name="still writable")


def test_where_takes_django_lookups(alias: str) -> None:
    customers(alias, 12)
    source = DjangoSource(model=Customer, database=alias, where={"id__in": [2, 4, 11],
                                                                 "email__endswith": ".com"})
    assert [m["id"] for m in source.read()] == [2, 4, 11]
    with pytest.raises(ConfigurationError) as err:
        DjangoSource(model=Customer, where={"shoe_size__gt": 3})
    assert err.value.option == "where"


# -- models and aliases, from code and from stored specs -------------------------------
def test_models_resolve_from_classes_labels_and_import_strings() -> None:
    for model in (Customer, "testapp.Customer",
                  "tests.contrib.django.testapp.models:Customer"):
        source = DjangoSource(model=model)
        assert source.to_dict() == {"type": "django", "config": {"model": "testapp.customer"}}
    with pytest.raises(ConfigurationError) as err:
        DjangoSink(model="testapp.Nope")
    assert err.value.option == "model"
    with pytest.raises(ConfigurationError) as err:
        DjangoSink(model=Customer, database="elsewhere")
    assert err.value.option == "database"


def test_stored_specs_name_allowed_models_only(strict_untrusted: None) -> None:
    with untrusted_specs():
        source = Source.from_dict({"type": "django", "config": {
            "model": "testapp.Customer", "database": "postgresql"}})
        assert source.config.model is Customer
        sink = Sink.from_dict({"type": "django", "config": {"model": "testapp.reportcustomer"}})
        assert sink.config.model is ReportCustomer
        for config, option in (({"model": "auth.User"}, "model"),
                               ({"model": "tests.contrib.django.testapp.models:Customer"},
                                "model"),
                               ({"model": "testapp.Customer", "database": "other"},
                                "database")):
            with pytest.raises(ConfigurationError) as err:
                Source.from_dict({"type": "django", "config": config})
            assert err.value.option == option
            assert "not a registered model" in str(err.value) or option == "database"


# -- exactly-once: the cursor commits in the sink's transaction ---------------------------
def test_the_cursor_commits_in_the_sinks_transaction(alias: str, engine: sa.Engine) -> None:
    """A run whose claim is taken away mid-run writes nothing more: the batch whose cursor
    could not be saved (the guarded update found no row) is rolled back with it."""
    from active_data_flow.catalog import FlowCatalog
    from active_data_flow.contrib.django.conf import sqlalchemy_url
    from active_data_flow.contrib.django.connectors import DjangoTransaction
    from active_data_flow.runtimes.heartbeat import Executor
    from active_data_flow.runtimes.heartbeat.engine.sync import sync
    from active_data_flow.runtimes.heartbeat.store import FlowStore

    customers(alias, 12)

    class CopyForTest(DataFlow):
        name = "copy_for_test"
        batch_size = 5
        source = DjangoSource(model=Customer, database=alias, batch_size=5)
        sink = DjangoSink(model=ReportCustomer, database=alias)

        def transform(self, message: Any) -> dict[str, Any]:
            if message["id"] == 8:  # in the second batch: another worker takes the run
                with engine.begin() as conn:
                    conn.exec_driver_sql("UPDATE adf_runs SET claim_token = 'stolen' "
                                         "WHERE status = 'running'")
            return {"id": message["id"], "email": message["email"],
                    "display_name": message["name"], "visits": 0}

    other = "default" if alias != "default" else "postgresql"
    store = FlowStore(sqlalchemy_url(alias))
    flows = FlowCatalog()
    try:
        assert store.shares_database_with(DjangoTransaction(alias))
        assert not store.shares_database_with(DjangoTransaction(other))
        sync(store, CopyForTest, flows=flows)
        pending = store.trigger("copy_for_test", reason="test")
        executor = Executor(store, flows=flows)
        try:
            executor.execute_run(pending.id)
        finally:
            executor.close()
        # The first batch (ids 1-5) and its cursor committed together; the second batch's
        # checkpoint found the run no longer held, so its rows were rolled back with it.
        assert list(ReportCustomer.objects.using(alias).values_list("id", flat=True)
                    .order_by("id")) == [1, 2, 3, 4, 5]
        assert store.flows.get("copy_for_test").cursor == 5
    finally:
        store.close()
