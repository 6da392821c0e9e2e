"""The ActiveDataFlow demo: flows that keep a reporting table and an export up to date.

Run it with ``python3 dev.py demo``. It writes everything to ``demo-output/``:

1. generates a shop database (SQLite) with 50,000 orders;
2. registers the code-defined flows of ``examples/demo/data_flows`` in a flow store;
3. runs heartbeats: each due flow is claimed once, run, recorded, its cursor saved;
4. adds and updates orders, runs them again — only the changes are read;
5. shows ``adf list`` and ``adf runs``, and how to open the web engine on the same data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "data_flows"
OUT = Path.cwd() / "demo-output"

# The settings the `adf` command and the flows read; set before anything is imported.
os.environ["ADF_DEMO_DIR"] = str(OUT)
os.environ["ADF_DATABASE_URL"] = f"sqlite:///{OUT / 'adf.db'}"
os.environ["ADF_FLOWS"] = str(FLOWS)
os.environ.setdefault("COLUMNS", "110")
sys.path.insert(0, str(FLOWS))

from rich.console import Console  # noqa: E402

console = Console()


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def adf(*args: str) -> None:
    """Run an `adf` command as a user would, printing what it prints."""
    console.print(f"[dim]$ adf {' '.join(args)}[/dim]")
    subprocess.run([sys.executable, "-m", "active_data_flow.cli", *args], check=False)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    import shop

    from active_data_flow.cli.store import print_beat
    from active_data_flow.runtimes.heartbeat import FlowStore, beat, sync

    step("1. A shop database with 50,000 orders (SQLite)")
    shop.create_tables()
    shop.add_orders(1, 50_000, seed=1)
    console.print(f"{OUT / 'shop.db'}: {shop.count(shop.Order):,} orders, "
                  f"{shop.count(shop.PaidOrder):,} rows in paid_orders")

    step("2. Register the flows defined in code (adf sync)")
    store = FlowStore()  # ADF_DATABASE_URL; the embedded SQLite store migrates itself
    report = sync(store)
    console.print(f"created {', '.join(report.created)} in {store.url}")

    step("3. A heartbeat runs every due flow, once")
    started = time.perf_counter()
    print_beat(beat(store))  # sync_paid_orders: due at once (interval 60 s)
    console.print("[dim]export_large_orders runs on a cron schedule (*/5 * * * *); "
                  "ask for it now, as the web engine's Run now button does:[/dim]")
    store.trigger("export_large_orders")
    print_beat(beat(store))
    console.print(f"paid_orders now holds {shop.count(shop.PaidOrder):,} rows "
                  f"({time.perf_counter() - started:.1f}s)")

    step("4. 5,000 new orders arrive and 300 pending orders are paid")
    shop.add_orders(50_001, 5_000, seed=2)
    paid = shop.pay_pending_orders(300)
    for name in ("sync_paid_orders", "export_large_orders"):
        store.trigger(name)  # "run now", as the web engine's button does
    summary = beat(store)
    print_beat(summary)
    read = {r.flow: r.read for r in summary.runs}
    console.print(f"sync_paid_orders read only the {read.get('sync_paid_orders', 0):,} "
                  f"changed orders (5,000 new + {paid} paid), not all 55,000; paid_orders "
                  f"has {shop.count(shop.PaidOrder):,} rows, one per paid order (upserts).")
    store.close()

    step("5. What the store recorded")
    adf("list")
    adf("runs", "sync_paid_orders")
    exported = (OUT / "large_orders.csv").read_text().splitlines()
    console.print(f"\n{OUT / 'large_orders.csv'}: {len(exported) - 1:,} large orders; first lines:")
    for line in exported[:3]:
        console.print(f"  {line}", highlight=False)

    step("Next: the web engine on the same data")
    console.print(
        "Open it with\n\n"
        f"  ADF_DATABASE_URL={os.environ['ADF_DATABASE_URL']} \\\n"
        f"  ADF_FLOWS={FLOWS} ADF_DEMO_DIR={OUT} \\\n"
        "  .venv/bin/adf serve --insecure-no-auth --heartbeat-every 5\n\n"
        "and browse http://127.0.0.1:8000/ — the dashboard lists both flows with their last "
        "runs; a flow's page charts its rows and durations and has Run now / Pause.",
        highlight=False,
    )


if __name__ == "__main__":
    main()
