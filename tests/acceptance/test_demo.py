"""The README's demo runs from a clean folder and does what it says."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "demo.py"


def test_the_demo_runs_and_reports_incremental_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    out = subprocess.run([sys.executable, str(DEMO)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "created export_large_orders, sync_paid_orders" in text
    assert "read only the 5,300 changed orders" in text
    assert "Runs of sync_paid_orders" in text
    shop = sqlite3.connect(tmp_path / "demo-output" / "shop.db")
    paid = shop.execute("select count(*) from orders where status = 'paid'").fetchone()[0]
    copied = shop.execute("select count(*) from paid_orders").fetchone()[0]
    assert copied == paid  # every paid order once, after an update too (upserts)
    exported = (tmp_path / "demo-output" / "large_orders.csv").read_text().splitlines()
    large = shop.execute("select count(*) from paid_orders where size = 'large'").fetchone()[0]
    assert len({line.split(",")[0] for line in exported[1:]}) == large
