"""Table -> small transform -> table: the flow's row and columnar paths against hand-written code.

    python3 dev.py bench columnar [--rows 100000,1000000] [--runs 5] [--databases ...]

Every cell (database x append/upsert x row count) runs each variant ``--runs`` times,
alternating the variants so that drift on a shared machine hits all alike, each run in its
own process (peak RSS is that process's; the time covers the copy, imports excluded), and
reports medians. Variants, all applying the same transform (``name`` upper-cased,
``amount`` doubled):

* ``row``: a DataFlow with ``transform(message)``, SqlAlchemySource -> SqlAlchemySink, defaults;
* ``columnar``: the same flow with ``transform_batch(table)`` (pyarrow compute);
* ``core``: hand-written SQLAlchemy Core: streaming read, ``conn.execute(insert, rows)``
  per 1,000 rows, commit per batch;
* ``copy`` (PostgreSQL): psycopg ``COPY ... FROM STDIN`` with ``write_row`` and the transform
  in Python, keyset reads, one transaction (upserts: a staging table and one merge);
* ``dbapi``: the plain DB-API driver: ``fetchmany(1000)`` -> transform -> ``executemany``,
  one transaction;
* ``sql``: ``INSERT ... SELECT`` with the transform in SQL, no Python: the ceiling;
* ``single``: the row flow with the single-record sink (``batch_size=1``) on
  ``--single-rows`` rows, once per cell (only its rate is compared).

Identical settings for every contender: SQLite files in WAL with ``synchronous=NORMAL``
(the flows are handed the same engines the hand-written variants use), source and target in
two files (a fresh target file per run); PostgreSQL and MariaDB at their server defaults.
MariaDB runs the row-path contenders (the columnar sink there is an executemany too).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
import sqlalchemy_copy as base  # the models, data and helpers of the issue-3 benchmark
from sqlalchemy_copy import COLUMNS, SOURCE, TARGET, transform

from active_data_flow import DataFlow
from active_data_flow.connectors.sqlalchemy import SqlAlchemySink, SqlAlchemySource

BATCH = 1000
MARIADB_ADMIN = os.environ.get(
    "ADF_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
SETS = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
MYSQL_SETS = ", ".join(f"{c} = VALUES({c})" for c in COLUMNS[1:])


#: The one way every variant opens a database: SQLite in WAL with synchronous=NORMAL.
engine = base.engine


def transform_batch(batch: pa.Table) -> pa.Table:
    """The same transform on a whole batch."""
    batch = batch.set_column(batch.schema.get_field_index("name"), "name",
                             pc.utf8_upper(batch.column("name")))
    return batch.set_column(batch.schema.get_field_index("amount"), "amount",
                            pc.multiply(batch.column("amount"), 2))


# -- the variants (each runs in a child process) --------------------------------------
def run_flow(src: str, dst: str, upsert: bool, *, columnar: bool = False,
             single: bool = False) -> None:
    options: dict[str, Any] = {"upsert": True} if upsert else {}
    if single:
        options["batch_size"] = 1
    src_db: Any = engine(src) if src.startswith("sqlite") else src
    dst_db: Any = engine(dst) if dst.startswith("sqlite") else dst
    body: dict[str, Any] = {
        "source": SqlAlchemySource(model=base.Source, database=src_db),
        "sink": SqlAlchemySink(model=base.Target, database=dst_db, **options),
    }
    if columnar:
        body["transform_batch"] = lambda self, batch: transform_batch(batch)
    else:
        body["transform"] = lambda self, message: transform(message)
    type("Copy", (DataFlow,), body)().run()


def run_core(src: str, dst: str, upsert: bool) -> None:
    read_engine, write_engine = engine(src), engine(dst)
    stmt = upsert_statement(write_engine.dialect.name) if upsert else sa.insert(TARGET)
    with read_engine.connect() as read, write_engine.connect() as write:
        result = read.execution_options(stream_results=True, yield_per=BATCH).execute(
            sa.select(SOURCE))
        for rows in result.mappings().partitions(BATCH):
            write.execute(stmt, [transform(r) for r in rows])
            write.commit()


def upsert_statement(dialect: str) -> Any:
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql

        stmt = mysql.insert(TARGET)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in COLUMNS[1:]})
    return base.upsert_statement(dialect)


def run_copy(src: str, dst: str, upsert: bool) -> None:
    read_engine, write_engine = engine(src), engine(dst)
    with read_engine.connect() as read, write_engine.connect() as write, write.begin():
        base.fastest_postgresql(read, write, upsert)


def raw_connection(url: str) -> Any:
    eng = engine(url)
    return eng.raw_connection()


def run_dbapi(src: str, dst: str, upsert: bool) -> None:
    read, write = raw_connection(src), raw_connection(dst)
    dialect = sa.make_url(dst).get_backend_name()
    mark = "?" if dialect == "sqlite" else "%s"
    sql = (f"INSERT INTO target_rows ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join([mark] * len(COLUMNS))})")
    if upsert:
        sql += (f" ON DUPLICATE KEY UPDATE {MYSQL_SETS}" if dialect == "mysql"
                else f" ON CONFLICT (id) DO UPDATE SET {SETS}")
    rc, wc = read.cursor(), write.cursor()
    rc.execute(f"SELECT {', '.join(COLUMNS)} FROM source_rows ORDER BY id")
    while rows := rc.fetchmany(BATCH):
        wc.executemany(sql, [(i, n.upper(), e, a * 2, c) for i, n, e, a, c in rows])
    write.commit()
    read.close()
    write.close()


def run_sql(src: str, dst: str, upsert: bool) -> None:
    eng = engine(dst)
    dialect = eng.dialect.name
    select = "SELECT id, upper(name), email, amount * 2, created_at FROM {table}"
    with eng.connect() as conn:
        table = "source_rows"
        if dialect == "sqlite":
            conn.exec_driver_sql(f"ATTACH DATABASE '{sa.make_url(src).database}' AS src")
            table = "src.source_rows"
        sql = f"INSERT INTO target_rows ({', '.join(COLUMNS)}) " + select.format(table=table)
        if upsert and dialect == "mysql":
            sql += f" ON DUPLICATE KEY UPDATE {MYSQL_SETS}"
        elif upsert:  # SQLite needs a WHERE to parse ON CONFLICT after a SELECT
            sql += (" WHERE true" if dialect == "sqlite" else "") + (
                f" ON CONFLICT (id) DO UPDATE SET {SETS}")
        conn.exec_driver_sql(sql)
        conn.commit()


VARIANTS: dict[str, Callable[[str, str, bool], None]] = {
    "row": run_flow,
    "columnar": lambda s, d, u: run_flow(s, d, u, columnar=True),
    "core": run_core,
    "copy": run_copy,
    "dbapi": run_dbapi,
    "sql": run_sql,
    "single": lambda s, d, u: run_flow(s, d, u, single=True),
}


def variants_for(kind: str) -> list[str]:
    if kind == "postgresql":
        return ["row", "columnar", "core", "copy", "dbapi", "sql"]
    if kind == "mariadb":
        return ["row", "columnar", "core", "dbapi", "sql"]
    return ["row", "columnar", "core", "dbapi", "sql"]


def preload() -> None:
    """Import what any variant may use, before the clock starts (imports are excluded)."""
    import importlib

    for name in ("psycopg", "pymysql", "pyarrow.csv", "pyarrow.compute",
                 "adbc_driver_postgresql.dbapi", "sqlalchemy.dialects.postgresql.psycopg",
                 "sqlalchemy.dialects.mysql.pymysql"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def child(variant: str, mode: str, src: str, dst: str) -> None:
    preload()
    started = time.perf_counter()
    VARIANTS[variant](src, dst, mode == "upsert")
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "peak_kib": base.peak_rss_kib()}))


# -- setup ------------------------------------------------------------------------------
def reset_target(url: str, src: str, mode: str) -> None:
    eng = engine(url)
    if eng.dialect.name == "sqlite":  # a new file for every run
        path = Path(eng.url.database or "")
        for suffix in ("", "-wal", "-shm", "-journal"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    TARGET.drop(eng, checkfirst=True)
    TARGET.create(eng)
    if mode == "upsert":  # every other row exists already, with stale values
        with eng.connect() as conn:
            table = "source_rows"
            if eng.dialect.name == "sqlite":
                conn.exec_driver_sql(f"ATTACH DATABASE '{sa.make_url(src).database}' AS src")
                table = "src.source_rows"
            conn.exec_driver_sql(
                f"INSERT INTO target_rows ({', '.join(COLUMNS)}) SELECT id, 'old', email, 0, "
                f"created_at FROM {table} WHERE MOD(id, 2) = 0")
            conn.commit()
    eng.dispose()


def measure(variant: str, mode: str, src: str, dst: str, count: int) -> dict[str, float]:
    reset_target(dst, src, mode)
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--mode", mode, "--src", src,
         "--dst", dst], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).parent)])},
    )
    if out.returncode != 0:
        raise SystemExit(f"{variant} {mode} failed:\n{out.stderr}")
    if variant != "single":
        base.check_target(dst, count)
        check_transformed(dst)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def check_transformed(url: str) -> None:
    eng = engine(url)
    with eng.connect() as conn:
        row = conn.execute(sa.select(TARGET).where(TARGET.c.id == 7)).one()
    eng.dispose()
    if row.name != "NAME 7" or row.amount != 14:
        raise SystemExit(f"row 7 was not transformed: {row}")


def databases(kind: str, workdir: Path) -> tuple[str, str, Callable[[], None]]:
    if kind != "mariadb":
        return base.databases(kind, workdir)  # type: ignore[no-any-return]
    name = f"adf_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = MARIADB_ADMIN.replace("/test?", f"/{name}?")

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()

    return url, url, drop


def fill_source(url: str, count: int) -> None:
    if url.startswith("mysql"):
        eng = engine(url)
        SOURCE.drop(eng, checkfirst=True)
        SOURCE.create(eng)
        stamp = dt.datetime(2024, 1, 1, 12, 0, 0)
        with eng.begin() as conn:
            for start in range(1, count + 1, 50_000):
                conn.execute(sa.insert(SOURCE), [
                    {"id": i, "name": f"name {i}", "email": f"user{i}@example.com",
                     "amount": i % 1000, "created_at": stamp + dt.timedelta(seconds=i)}
                    for i in range(start, min(count, start + 49_999) + 1)])
        eng.dispose()
        return
    base.fill_source(url, count)


# -- main -------------------------------------------------------------------------------
Cell = dict[str, dict[str, float]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--runs", default="5", help="runs per cell, or one per --rows entry")
    parser.add_argument("--single-rows", type=int, default=5_000)
    parser.add_argument("--databases", default="sqlite,postgresql,mariadb")
    parser.add_argument("--modes", default="append,upsert")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--tables", nargs="*", help="print the tables of saved --json files")
    parser.add_argument("--child")
    parser.add_argument("--mode")
    parser.add_argument("--src")
    parser.add_argument("--dst")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mode, args.src, args.dst)
        return
    if args.tables:
        print_saved(args.tables)
        return
    counts = [int(r) for r in args.rows.split(",")]
    runs = [int(r) for r in args.runs.split(",")]
    runs = runs * len(counts) if len(runs) == 1 else runs
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases.split(","):
            src, dst, cleanup = databases(kind, Path(tmp))
            try:
                for count, repeat in zip(counts, runs, strict=True):
                    print(f"filling {kind} source with {count:,} rows...", flush=True)
                    fill_source(src, count)
                    for mode in args.modes.split(","):
                        names = variants_for(kind)
                        done: dict[str, list[dict[str, float]]] = {v: [] for v in names}
                        for i in range(repeat):
                            order = names if i % 2 == 0 else names[::-1]
                            for variant in order:
                                run = measure(variant, mode, src, dst, count)
                                done[variant].append(run)
                                print(f"  {kind} {mode} {count:,} {variant}: "
                                      f"{run['seconds']:.2f}s", flush=True)
                        cell: Cell = {}
                        for variant, got in done.items():
                            seconds = statistics.median(r["seconds"] for r in got)
                            cell[variant] = {
                                "seconds": seconds, "rate": count / seconds,
                                "peak_kib": statistics.median(r["peak_kib"] for r in got),
                                "runs": len(got)}
                        results.append({"db": kind, "mode": mode, "rows": count,
                                        "cell": cell})
                        if args.json:  # kept as it grows: a long run cut short keeps its cells
                            Path(args.json).write_text(json.dumps(results, indent=1))
                    fill_source(src, args.single_rows)
                    for mode in args.modes.split(","):
                        one = measure("single", mode, src, dst, args.single_rows)
                        for r in results:
                            if (r["db"], r["mode"], r["rows"]) == (kind, mode, count):
                                r["cell"]["single"] = {**one,
                                                       "rate": args.single_rows / one["seconds"]}
            finally:
                cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print_tables(results)


def print_saved(paths: list[str]) -> None:
    """The tables of results saved by earlier runs (``--json``), together."""
    results: list[dict[str, Any]] = []
    for path in paths:
        results.extend(json.loads(Path(path).read_text()))
    print_tables(results)


def ratio(cell: Cell, a: str, b: str, key: str = "rate") -> str:
    if a not in cell or b not in cell:
        return "n/a"
    return f"{cell[a][key] / cell[b][key]:.2f}"


def kilo(rate: float) -> str:
    """Rows per second in thousands (one decimal below 10k)."""
    return f"{rate / 1000:,.1f}k" if rate < 10_000 else f"{rate / 1000:,.0f}k"


def print_tables(results: list[dict[str, Any]]) -> None:
    names = ["row", "columnar", "core", "copy", "dbapi", "sql", "single"]
    print("\nrows/s (median) and peak RSS MiB (median), per variant\n")
    print("| cell | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for r in results:
        cell = r["cell"]
        parts = [f"{kilo(cell[v]['rate'])} / {cell[v]['peak_kib'] / 1024:.0f}"
                 if v in cell else "-" for v in names]
        runs = cell["row"]["runs"]
        print(f"| {r['db']} {r['mode']} {r['rows']:,} (x{runs:.0f}) | " + " | ".join(parts)
              + " |")
    print("\nratios (target in brackets)\n")
    print("| cell | columnar/copy [>=1.0] | columnar/sql [>=0.5] | columnar/row [>=2, SQLite]"
          " | copy/row [<=1.5] | dbapi/row [<=1.5, SQLite] | row/core [>=1.0] "
          "| row/single [>=10] | RSS row/core [<=2] | RSS columnar/core [<=2] |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c = r["cell"]
        print(f"| {r['db']} {r['mode']} {r['rows']:,} | {ratio(c, 'columnar', 'copy')} | "
              f"{ratio(c, 'columnar', 'sql')} | {ratio(c, 'columnar', 'row')} | "
              f"{ratio(c, 'copy', 'row')} | {ratio(c, 'dbapi', 'row')} | "
              f"{ratio(c, 'row', 'core')} | {ratio(c, 'row', 'single')} | "
              f"{ratio(c, 'row', 'core', 'peak_kib')} | "
              f"{ratio(c, 'columnar', 'core', 'peak_kib')} |")
    by = {(r["db"], r["mode"], r["rows"]): r["cell"] for r in results}
    lines = []
    for (db, mode, rows), cell in by.items():
        largest = max(n for d, m, n in by if (d, m) == (db, mode))
        if largest == rows:
            continue
        big = by[(db, mode, largest)]
        lines.append(f"| {db} {mode} {rows:,} -> {largest:,} | "
                     f"{big['row']['peak_kib'] / cell['row']['peak_kib']:.2f} | "
                     + (f"{big['columnar']['peak_kib'] / cell['columnar']['peak_kib']:.2f}"
                        if "columnar" in cell else "n/a") + " |")
    if lines:
        print("\npeak RSS growth (target <= 1.25)\n")
        print("| cell | row | columnar |")
        print("|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
