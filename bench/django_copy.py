"""Copy rows model -> model with a small transform: a Django flow against a hand-written loop.

    python3 bench/django_copy.py [--rows 100000,1000000] [--rounds 3] [--dbs sqlite,postgresql]

Variants, each in a fresh process (so its peak RSS is its own), alternated round by round:

* ``flow``: ``DjangoSource(batch_size=1000)`` -> transform -> ``DjangoSink(batch_size=1000)``
  (keyset pages, ``bulk_create`` per batch, one transaction per batch);
* ``loop``: the hand-written reference, ``Src.objects.iterator(chunk_size=1000)`` and
  ``bulk_create`` per chunk of 1000, one ``transaction.atomic`` per chunk;
* ``save``: the sink's single-record path (``batch_size=1``: ``full_clean()`` and ``save()``
  per record) on ``--save-rows`` rows (default 5000), against ``flow`` on as many rows.

Prints medians (rows/s), the ratios flow/loop and flow/save, and the flow's peak RSS per
row count. The machine is shared (2 cores, other jobs running): compare ratios within a run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("ADF_BENCH_PG", "127.0.0.1:5432")


# -- the child: one variant, one database ---------------------------------------------------
def _setup(kind: str, name: str) -> None:
    import django
    from django.conf import settings

    if kind == "sqlite":
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    else:
        host, _, port = PG.rpartition(":")
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": name,
                    "USER": "postgres", "HOST": host, "PORT": port}
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                        "active_data_flow.contrib.django"],
        DATABASES={"default": database}, USE_TZ=True, TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
    django.setup()


def _models() -> tuple[Any, Any]:
    from django.db import models

    class Src(models.Model):
        name = models.CharField(max_length=64)
        amount = models.IntegerField()
        updated_at = models.DateTimeField()

        class Meta:
            app_label = "adf_bench"

    class Dst(models.Model):
        id = models.BigIntegerField(primary_key=True)
        name = models.CharField(max_length=64)
        amount_cents = models.IntegerField()
        updated_at = models.DateTimeField()

        class Meta:
            app_label = "adf_bench"

    return Src, Dst


def child(variant: str, kind: str, name: str, rows: int) -> dict[str, Any]:
    _setup(kind, name)
    from django.db import connection, transaction

    from active_data_flow import DataFlow
    from active_data_flow.contrib.django.connectors import DjangoSink, DjangoSource

    src_model, dst_model = _models()
    with connection.cursor() as cur:
        cur.execute(f"DELETE FROM {dst_model._meta.db_table}")
    started = time.perf_counter()
    if variant == "loop":
        chunk: list[Any] = []

        def write(objs: list[Any]) -> None:
            with transaction.atomic():
                dst_model.objects.bulk_create(objs)

        for r in src_model.objects.filter(id__lte=rows).order_by("id").iterator(
                chunk_size=1000):
            chunk.append(dst_model(id=r.id, name=r.name.upper(), amount_cents=r.amount * 100,
                                   updated_at=r.updated_at))
            if len(chunk) == 1000:
                write(chunk)
                chunk = []
        if chunk:
            write(chunk)
    else:
        batch = 1 if variant == "save" else 1000

        class Copy(DataFlow):
            name = "bench_copy"
            source = DjangoSource(model=src_model, batch_size=1000, limit=rows)
            sink = DjangoSink(model=dst_model, batch_size=batch)
            batch_size = 1000

            def transform(self, m: Any) -> dict[str, Any]:
                return {"id": m["id"], "name": m["name"].upper(),
                        "amount_cents": m["amount"] * 100, "updated_at": m["updated_at"]}

        result = Copy().run()
        assert result.written == rows, result
    seconds = time.perf_counter() - started
    copied = dst_model.objects.count()
    assert copied == rows, (variant, copied, rows)
    return {"variant": variant, "seconds": seconds, "rows": rows,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# -- the parent: databases, rounds, the table ---------------------------------------------
def _create(kind: str, folder: Path, rows: int) -> str:
    import sqlalchemy as sa

    if kind == "sqlite":
        name = str(folder / f"bench-{uuid.uuid4().hex[:8]}.sqlite3")
        url = f"sqlite:///{name}"
    else:
        name = f"adf_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(f"postgresql+psycopg://postgres@{PG}/postgres",
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = f"postgresql+psycopg://postgres@{PG}/{name}"
    engine = sa.create_engine(url)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        serial = ("INTEGER PRIMARY KEY AUTOINCREMENT" if kind == "sqlite"
                  else "BIGSERIAL PRIMARY KEY")
        stamp = "datetime" if kind == "sqlite" else "timestamptz"
        conn.exec_driver_sql(f"CREATE TABLE adf_bench_src (id {serial}, name varchar(64) NOT "
                             f"NULL, amount integer NOT NULL, updated_at {stamp} NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE adf_bench_dst (id bigint PRIMARY KEY, name "
                             f"varchar(64) NOT NULL, amount_cents integer NOT NULL, updated_at "
                             f"{stamp} NOT NULL)")
        table = sa.table("adf_bench_src", sa.column("name"), sa.column("amount"),
                         sa.column("updated_at"))
        for base in range(0, rows, 50_000):
            values = [{"name": f"row {i}", "amount": i % 1000,
                       "updated_at": (start + dt.timedelta(seconds=i)).replace(tzinfo=None)
                       if kind == "sqlite" else start + dt.timedelta(seconds=i)}
                      for i in range(base, min(rows, base + 50_000))]
            conn.execute(sa.insert(table), values)
    engine.dispose()
    return name


def _drop(kind: str, name: str) -> None:
    if kind == "sqlite":
        Path(name).unlink(missing_ok=True)
        return
    import sqlalchemy as sa

    admin = sa.create_engine(f"postgresql+psycopg://postgres@{PG}/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def _run(variant: str, kind: str, name: str, rows: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", variant, kind, name, str(rows)],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{variant} on {kind} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save-rows", type=int, default=5000)
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        variant, kind, name, rows = args.child
        print(json.dumps(child(variant, kind, name, int(rows))))
        return
    folder = Path(os.environ.get("TMPDIR", "/tmp"))
    counts = [int(n) for n in args.rows.split(",")]
    print("| db | rows | flow rows/s | loop rows/s | flow/loop | flow peak RSS MB | "
          "loop peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    summary: list[str] = []
    for kind in args.dbs.split(","):
        name = _create(kind, folder, max(counts))
        try:
            for rows in counts:
                times: dict[str, list[float]] = {"flow": [], "loop": []}
                rss: dict[str, list[float]] = {"flow": [], "loop": []}
                for round_ in range(args.rounds):
                    order = ("flow", "loop") if round_ % 2 == 0 else ("loop", "flow")
                    for variant in order:
                        got = _run(variant, kind, name, rows)
                        times[variant].append(got["seconds"])
                        rss[variant].append(got["peak_rss_mb"])
                flow, loop = (statistics.median(times[v]) for v in ("flow", "loop"))
                print(f"| {kind} | {rows:,} | {rows / flow:,.0f} | {rows / loop:,.0f} | "
                      f"{loop / flow:.2f}x | {statistics.median(rss['flow']):.0f} | "
                      f"{statistics.median(rss['loop']):.0f} |", flush=True)
            n = args.save_rows
            batched, single = [], []
            for round_ in range(args.rounds):
                order = ("flow", "save") if round_ % 2 == 0 else ("save", "flow")
                for variant in order:
                    got = _run(variant, kind, name, n)
                    (batched if variant == "flow" else single).append(got["seconds"])
            b, s = statistics.median(batched), statistics.median(single)
            summary.append(f"| {kind} | {n:,} | {n / b:,.0f} | {n / s:,.0f} | {s / b:.1f}x |")
        finally:
            _drop(kind, name)
    print("\n| db | rows | batched sink rows/s | save() path rows/s | batched/save |")
    print("|---|---|---|---|---|")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
