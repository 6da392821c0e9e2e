"""Streaming keeps memory flat: 1,000,000 rows peak at no more than 1.25x of 100,000 rows."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.sqlalchemy.models import Base

ROOT = Path(__file__).resolve().parents[3]

STREAM = """
import resource, sys
from active_data_flow.connectors.sqlalchemy import SqlAlchemySource
from tests.integration.sqlalchemy.models import Person
url, limit = sys.argv[1], int(sys.argv[2])
count = 0
for message in SqlAlchemySource(model=Person, database=url, limit=limit).each():
    count += 1
print(count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def fill(path: Path, count: int) -> str:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    stamp = dt.datetime(2024, 1, 1).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO people (id, email, name, score, updated_at) VALUES (?, ?, ?, ?, ?)",
            ((i, f"user{i}@example.com", f"User {i}", i % 1000, stamp)
             for i in range(1, count + 1)),
        )
    return url


def peak_kib(url: str, limit: int) -> int:
    out = subprocess.run([sys.executable, "-c", STREAM, url, str(limit)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == limit
    return int(out[1])


@pytest.mark.slow
def test_streaming_a_million_rows_takes_no_more_memory_than_a_hundred_thousand(
    tmp_path: Path,
) -> None:
    url = fill(tmp_path / "big.sqlite3", 1_000_000)
    small, large = peak_kib(url, 100_000), peak_kib(url, 1_000_000)
    assert large <= 1.25 * small, f"peak RSS {large} KiB for 1M rows vs {small} KiB for 100k"
