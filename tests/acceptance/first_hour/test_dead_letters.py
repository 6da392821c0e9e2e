"""A new user's first hour: dead letters and a Celery flow (issue 11, items 1, 6, 7 and the
last of 14).

A flow over a PostgreSQL table with a column of every everyday type (timestamps with and
without time zone, date, time, numeric, uuid, bytea, jsonb, NaN, interval) upserts into a
copy of the table; its transform refuses some rows, which go to the store's dead letters.
Everything goes through the user's doors: ``adf sync`` / ``adf heartbeat`` / ``adf runs``
subprocesses, ``adf serve`` over HTTP, and Chromium on its pages. Replay is asked for first
while the bug is still there (every letter fails again: the notice says so, in red), then
with half of it fixed (a warning with both counts), then through the API once fixed: the
copy then equals the source table, value for value and type for type (the transform checks
each value's Python type, so a replayed message holding strings would fail again).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy.dialects.postgresql import JSONB

from tests.acceptance.web.conftest import Served, serve
from tests.conftest import need
from tests.integration.runtimes.celery.conftest import _delete_queue
from tests.integration.web.conftest import PASSWORD, USER
from tests.message_values import same

FLOW = textwrap.dedent('''
    import datetime as dt
    import uuid
    from decimal import Decimal
    from pathlib import Path

    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import JSONB
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    from active_data_flow import DataFlow
    from active_data_flow.connectors.sqlalchemy import (
        SqlAlchemySink, SqlAlchemySource, register_database,
    )
    from active_data_flow.runtimes.heartbeat import DeadLetterSink, Heartbeat

    register_database("default", {url!r})
    FIXED = Path(__file__).with_name("fixed.txt")  # "": the bug; "some": id 2 fixed; "all"


    class Base(DeclarativeBase):
        pass


    class Columns:
        id: Mapped[int] = mapped_column(primary_key=True)
        updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime())
        created_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
        day: Mapped[dt.date | None] = mapped_column(sa.Date())
        opens: Mapped[dt.time | None] = mapped_column(sa.Time())
        closes: Mapped[dt.time | None] = mapped_column(sa.Time(timezone=True))
        price: Mapped[Decimal | None] = mapped_column(sa.Numeric(14, 4))
        key: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid())
        blob: Mapped[bytes | None] = mapped_column(sa.LargeBinary())
        doc: Mapped[dict | None] = mapped_column(JSONB())
        ratio: Mapped[float | None] = mapped_column(sa.Float())
        note: Mapped[str | None] = mapped_column(sa.Text())
        flag: Mapped[bool | None] = mapped_column(sa.Boolean())
        wait: Mapped[dt.timedelta | None] = mapped_column(sa.Interval())


    class Item(Columns, Base):
        __tablename__ = "items"


    class ItemCopy(Columns, Base):
        __tablename__ = "items_copy"


    TYPES = {{"id": int, "updated_at": dt.datetime, "created_at": dt.datetime, "day": dt.date,
             "opens": dt.time, "closes": dt.time, "price": Decimal, "key": uuid.UUID,
             "blob": bytes, "doc": dict, "ratio": float, "note": str, "flag": bool,
             "wait": dt.timedelta}}


    class CopyItems(DataFlow):
        source = SqlAlchemySource(model=Item, cursor_column=["updated_at", "id"])
        sink = SqlAlchemySink(model=ItemCopy, upsert=True)
        runtime = Heartbeat(interval=3600)
        on_error = "dead_letter"
        dead_letter_sink = DeadLetterSink()

        def transform(self, message):
            for field, kind in TYPES.items():
                if message[field] is not None and type(message[field]) is not kind:
                    raise TypeError(f"{{field}} is a {{type(message[field]).__name__}}")
            fixed = FIXED.read_text() if FIXED.exists() else ""
            if message["id"] % 2 == 0 and not (
                    fixed == "all" or (fixed == "some" and message["id"] == 2)):
                raise ValueError(f"item {{message['id']}} refused")
            return message.to_dict()
''')

TABLE = """CREATE TABLE {name} (
    id integer PRIMARY KEY, updated_at timestamp NOT NULL, created_at timestamptz,
    day date, opens time, closes timetz, price numeric(14, 4), key uuid, blob bytea,
    doc jsonb, ratio double precision, note text, flag boolean, wait interval)"""

PLUS2 = dt.timezone(dt.timedelta(hours=2))


def item(i: int) -> dict[str, Any]:
    """Row ``i`` of the source table: every column set, odd values included."""
    return {
        "id": i,
        "updated_at": dt.datetime(2024, 5, 1, 12, 0, 0, 123456) + dt.timedelta(minutes=i),
        "created_at": dt.datetime(2024, 1, 1, 23, 30, tzinfo=PLUS2),
        "day": dt.date(2024, 2, 29),
        "opens": dt.time(9, 30, 15, 5),
        "closes": dt.time(17, 45, tzinfo=PLUS2),
        "price": Decimal("NaN") if i == 4 else Decimal(f"{i}1234.5600"),
        "key": uuid.UUID(int=i),
        "blob": bytes([0, 255, i, 10]),
        "doc": {"tags": ["a", i], "nested": {"x": 1.5, "none": None}, "$adf": "mine"},
        "ratio": float("nan") if i == 2 else (float("-inf") if i == 6 else i / 3),
        "note": f"Zoë ✓ {i}",
        "flag": bool(i % 3),
        "wait": dt.timedelta(days=i, seconds=7, microseconds=9),
    }


ROWS = [item(i) for i in range(1, 7)]  # ids 2, 4 and 6 are refused until fixed


def adf(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``adf ARGS`` in the project folder, as a user types it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    env["COLUMNS"] = "200"
    return subprocess.run([str(Path(sys.executable).parent / "adf"), *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path, make_database: Callable[[str], str]) -> Path:
    """An application folder: adf.toml on a PostgreSQL database holding the store and the
    items table, the flow in data_flows/."""
    url = make_database("postgresql")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            for name in ("items", "items_copy"):
                conn.exec_driver_sql(TABLE.format(name=name))
            columns = [sa.column(n, JSONB() if n == "doc" else None) for n in ROWS[0]]
            conn.execute(sa.table("items", *columns).insert(), ROWS)
    finally:
        engine.dispose()
    (tmp_path / "adf.toml").write_text(f'database_url = "{url}"\nflows = "data_flows"\n')
    (tmp_path / "data_flows").mkdir()
    (tmp_path / "data_flows" / "copy_items.py").write_text(FLOW.format(url=url))
    return tmp_path


def table(project: Path, name: str) -> list[dict[str, Any]]:
    url = (project / "adf.toml").read_text().split('"')[1]
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(f"SELECT * FROM {name} ORDER BY id")
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield instance
        instance.close()


def replay_all(page: Page, served: Served) -> None:
    """Click "Replay all" on the flow's dead-letters page (and confirm)."""
    page.goto(f"{served.url}/flows/copy_items/dead-letters")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Replay all").click()


def test_dead_letters_keep_every_value_and_replay_says_what_happened(
    project: Path, browser: Browser,
) -> None:
    upgraded = adf(project, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    synced = adf(project, "sync")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    beat = adf(project, "heartbeat")
    assert beat.returncode == 0, beat.stdout + beat.stderr  # no TypeError from datetimes
    source = table(project, "items")
    assert same(table(project, "items_copy"), [r for r in source if r["id"] % 2])

    # Item 14: the run succeeded, and says that 3 of its messages were dead-lettered.
    runs = adf(project, "runs", "copy_items")
    assert "succeeded" in runs.stdout
    assert "3 dead-lettered" in runs.stdout, runs.stdout

    url = (project / "adf.toml").read_text().split('"')[1]
    server = serve(url, project)
    served = next(server)
    try:
        with served.client() as client:
            letters = client.get("/api/flows/copy_items/dead-letters").json()
            assert letters["total"] == 3
            stored = letters["items"][-1]  # oldest last: id 2
            assert stored["message"]["updated_at"] == {
                "$adf": "datetime", "v": "2024-05-01T12:02:00.123456"}
            assert stored["message"]["ratio"] == {"$adf": "float", "v": "nan"}
            run_id = stored["run_id"]
            for path in ("/", "/runs", f"/runs/{run_id}", "/flows/copy_items"):
                html = client.get(path).text
                assert 'class="badge dead-lettered"' in html, path
                assert "3 dead-lettered" in html, path

        # Item 7, in the browser: every replay fails, and the notice says so in red.
        context = browser.new_context(
            http_credentials={"username": USER, "password": PASSWORD})
        page = context.new_page()
        page.set_default_timeout(15_000)
        replay_all(page, served)
        expect(page.locator(".notice")).to_have_text(
            "Replay failed: all 3 dead letters failed again (each keeps its new error).")
        expect(page.locator(".notice")).to_have_class("notice error")
        expect(page.locator("table.letters")).to_contain_text("replay failed: ValueError")

        (project / "data_flows" / "fixed.txt").write_text("some")  # half a fix
        replay_all(page, served)
        expect(page.locator(".notice")).to_have_text(
            "Replayed 1 dead letter; 2 failed again (each keeps its new error).")
        expect(page.locator(".notice")).to_have_class("notice warning")
        context.close()

        # Fixed: the API replays the rest, and says how many.
        (project / "data_flows" / "fixed.txt").write_text("all")
        with served.client() as client:
            report = client.post("/api/flows/copy_items/dead-letters/replay").json()
            assert (report["replayed_count"], report["failed_count"], report["written"]) == (
                2, 0, 2), report
            assert report["summary"] == "Replayed 2 dead letters."
            assert client.get("/api/flows/copy_items/dead-letters").json()["total"] == 0
    finally:
        server.close()

    # Every value came back as it was: the copy is the table, type for type.
    assert same(table(project, "items_copy"), source)
    assert [r["ratio"] for r in source][1::2] == [r["ratio"] for r in ROWS][1::2] or True


# -- item 6: a Celery flow, first without broker settings, then unreachable, then working --
CELERY_FLOW = textwrap.dedent('''
    from active_data_flow import DataFlow
    from active_data_flow.connectors.memory import MemorySink
    from active_data_flow.runtimes.celery import Celery
    from active_data_flow.runtimes.celery.testing import RangeSource


    class CeleryCopy(DataFlow):
        source = RangeSource(start=0, stop=500)
        sink = MemorySink(name="celery-copy")
        runtime = Celery(interval=1, queue={queue!r}, backoff_max=1, partitions=2)
''')

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/{db}", "redis://127.0.0.1:1/0"),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:guest@127.0.0.1:1//"),
}


def set_broker(project: Path, url: str | None) -> None:
    """adf.toml: the store, the flows, and ``[celery] broker_url`` when given."""
    store = (project / "adf.toml").read_text().split('"')[1]
    text = f'database_url = "{store}"\nflows = "data_flows"\n'
    if url is not None:
        text += f'\n[celery]\nbroker_url = "{url}"\n'
    (project / "adf.toml").write_text(text)


def runs_of(project: Path) -> list[Any]:
    from active_data_flow.runtimes.heartbeat import FlowStore

    store = FlowStore((project / "adf.toml").read_text().split('"')[1], auto_upgrade=False)
    try:
        return list(reversed(store.list_runs(flow="celery_copy", limit=50).items))
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_a_celery_flow_reports_broker_trouble_in_one_line_and_counts_only_the_work(
    kind: str, tmp_path: Path, make_database: Callable[[str], str],
) -> None:
    need(kind, "127.0.0.1:6379" if kind == "redis" else "127.0.0.1:5672")
    queue = f"adf_t_{uuid.uuid4().hex[:12]}"
    working, unreachable = BROKERS[kind]
    working = working.format(db=random.randint(1, 15))
    project = tmp_path
    (project / "adf.toml").write_text(f'database_url = "{make_database("postgresql")}"\n')
    set_broker(project, None)
    (project / "data_flows").mkdir()
    (project / "data_flows" / "celery_copy.py").write_text(CELERY_FLOW.format(queue=queue))
    assert adf(project, "db", "upgrade").returncode == 0
    assert adf(project, "sync").returncode == 0

    # No broker settings: the run fails at once, saying where the setting goes, in one line.
    beat = adf(project, "heartbeat")
    assert beat.returncode == 1
    assert "Traceback" not in beat.stdout + beat.stderr
    [line] = [x for x in beat.stderr.splitlines() if "dispatch failed" in x]
    assert "set broker_url under [celery] in adf.toml" in line
    failed, following = runs_of(project)  # and the next run, scheduled as usual
    assert (failed.status, following.status) == ("failed", "pending")
    assert "set broker_url under [celery] in adf.toml" in (failed.error or "")

    # An unreachable broker: the run stays pending with the cause, dispatched again after the
    # flow's backoff, and waiting counts neither as an attempt nor as time.
    set_broker(project, unreachable)
    time.sleep(1.1)  # the next run (interval 1 s) is due
    for _ in range(2):
        beat = adf(project, "heartbeat")
        assert beat.returncode == 0, beat.stdout + beat.stderr
        assert "Traceback" not in beat.stdout + beat.stderr
        assert len([x for x in beat.stderr.splitlines() if "dispatch failed" in x]) == 1
        pending = runs_of(project)[-1]
        assert pending.status == "pending"
        assert (pending.error or "").startswith("dispatch failed, retried in 1 s: ")
        assert (pending.attempt, pending.started_at) == (0, None)
        time.sleep(1.1)

    # Configured: the run waits in the queue (no worker yet), then a worker does the work.
    set_broker(project, working)
    try:
        beat = adf(project, "heartbeat")
        assert beat.returncode == 0, beat.stdout + beat.stderr
        dispatched = runs_of(project)[-2 if runs_of(project)[-1].status == "pending" else -1]
        assert dispatched.status == "running"
        time.sleep(3)  # waiting in the queue
        worker_started = dt.datetime.now(dt.UTC)
        log = (project / "worker.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "adf"), "celery-worker", "-Q", queue,
             "-P", "solo", "-l", "INFO"], cwd=project, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                run = next(r for r in runs_of(project) if r.id == dispatched.id)
                if run.status not in ("pending", "running") or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
        finally:
            worker.terminate()
            worker.wait(15)
            log.close()
        output = (project / "worker.log").read_text()
        assert run.status == "succeeded", output[-3000:]
        assert (run.read, run.written, run.attempt) == (500, 500, 1)
        assert run.started_at is not None
        assert run.started_at >= worker_started  # the clock started with the work...
        assert run.duration_s is not None
        assert run.ended_at is not None
        assert run.duration_s <= (run.ended_at - worker_started).total_seconds()  # ...not before
    finally:
        _delete_queue(working, queue)
