"""Peak memory while streaming a table through SqlAlchemySource: 100,000 vs 1,000,000 rows.

    python3 dev.py bench sqlalchemy_memory [--databases sqlite,postgresql]

Each read runs in its own process; its peak RSS (``VmHWM``) is reported beside the same read
done by hand with a streaming SQLAlchemy ``Result`` (``yield_per=1000``). Target (issue 3):
1,000,000 rows peak within 1.25x of 100,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlalchemy_copy import SOURCE, Source, databases, fill_source, peak_rss_kib

from active_data_flow.connectors.sqlalchemy import SqlAlchemySource


def child(variant: str, url: str, limit: int) -> None:
    started, count = time.perf_counter(), 0
    if variant == "source":
        for _ in SqlAlchemySource(model=Source, database=url, limit=limit).each():
            count += 1
    else:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=1000).execute(
                sa.select(SOURCE).order_by(SOURCE.c.id).limit(limit))
            for _ in result.mappings():
                count += 1
    print(json.dumps({"rows": count, "seconds": time.perf_counter() - started,
                      "peak_kib": peak_rss_kib()}))


def measure(variant: str, url: str, limit: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--url", url, "--limit", str(limit)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == limit, result
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.limit)
        return
    small, large = args.rows // 10, args.rows
    table: list[tuple[str, str, dict[str, float], dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases.split(","):
            url, _, cleanup = databases(kind, Path(tmp))
            try:
                print(f"filling {kind} with {large:,} rows...", flush=True)
                fill_source(url, large)
                for variant in ("source", "hand"):
                    table.append((kind, variant, measure(variant, url, small),
                                  measure(variant, url, large)))
            finally:
                cleanup()
    print(f"\n{'database':<12}{'reader':<9}{'peak MiB ' + format(small, ','):>18}"
          f"{'peak MiB ' + format(large, ','):>20}{'ratio':>8}{'target':>9}{'rows/s':>11}")
    for kind, variant, a, b in table:
        print(f"{kind:<12}{variant:<9}{a['peak_kib'] / 1024:>18.1f}{b['peak_kib'] / 1024:>20.1f}"
              f"{b['peak_kib'] / a['peak_kib']:>8.2f}{'<= 1.25' if variant == 'source' else '':>9}"
              f"{large / b['seconds']:>11,.0f}")


if __name__ == "__main__":
    main()
