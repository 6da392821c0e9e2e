"""The ActiveDataFlow demo: example flows over generated data, then what they did.

Run it with ``python3 dev.py demo`` (or ``python examples/demo/demo.py`` in an environment
where active-data-flow is installed). Everything it writes goes to ``demo-output/``.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flows import ORDERS, OUT, ExportLargeOrders

from active_data_flow.cli._render import flow_progress, results_table

console = Console()


def generate_orders(path: Path, start: int, count: int, seed: int) -> None:
    """Append ``count`` generated orders to a JSON Lines file."""
    rng = random.Random(seed)
    countries = ["DE", "FR", "NL", "PL", "SE", "US", "BR", "JP"]
    with path.open("a") as f:
        for order_id in range(start, start + count):
            f.write(json.dumps({
                "id": order_id,
                "customer": f"customer-{rng.randint(1, 2000)}",
                "country": rng.choice(countries),
                "amount_cents": rng.randint(100, 250_000),
                "status": rng.choice(["paid", "paid", "paid", "refunded", "pending"]),
            }) + "\n")


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)

    step("1. Generate 50,000 orders as JSON Lines")
    generate_orders(ORDERS, 1, 50_000, seed=1)
    console.print(f"wrote {ORDERS}")

    step("2. Run ExportLargeOrders: paid orders over 1,000.00 -> CSV, in EUR")
    flow = ExportLargeOrders()
    with flow_progress(flow.name, None) as progress:
        first = flow.run(on_progress=progress)
    console.print(results_table([first]))

    step("3. 5,000 new orders arrive; the next run resumes after the saved cursor")
    generate_orders(ORDERS, 50_001, 5_000, seed=2)
    second = flow.run(cursor=first.cursor)
    console.print(results_table([second], title="Incremental run"))
    console.print(f"read only the {second.read:,} new orders (cursor {second.cursor})")

    exported = (OUT / "large_orders.csv").read_text().splitlines()
    console.print(f"\n{OUT / 'large_orders.csv'}: {len(exported) - 1:,} rows; the first three:")
    for line in exported[:4]:
        console.print(f"  {line}", highlight=False)


if __name__ == "__main__":
    main()
