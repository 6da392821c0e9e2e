"""Core overhead: what the framework costs over plain Python, measured in one run.

Part 1 — throughput: a memory-to-memory flow of N small dicts with a trivial transform,
against a plain Python loop doing the same work (read each dict, build the output dict, keep
it in a list). Target: the flow costs at most 4x the plain loop.

Part 2 — memory: peak RSS of a JSON Lines -> JSON Lines flow over 1,000,000 rows vs over
100,000 rows, each in a fresh subprocess. Target: within 1.25x (the file connectors stream).

    python3 dev.py bench core_overhead [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from active_data_flow import DataFlow, Message
from active_data_flow.connectors.memory import MemorySink, MemorySource


def make_rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "qty": i % 7, "sku": f"sku-{i % 1000}"} for i in range(n)]


def plain_loop(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        out.append({"id": row["id"], "total": row["qty"] * 3})
    return out


def flow_class(rows: list[dict[str, Any]]) -> type[DataFlow]:
    class Double(DataFlow):
        source = MemorySource(records=rows)
        sink = MemorySink(name="bench-core")

        def transform(self, message: Message) -> dict[str, Any]:
            return {"id": message["id"], "total": message["qty"] * 3}

    return Double


def timed(fn: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(n: int, repeat: int) -> None:
    rows = make_rows(n)
    flow = flow_class(rows)()
    sink_records = MemorySink.records_of("bench-core")
    plain_times, flow_times = [], []
    for _ in range(repeat):  # interleaved, so machine noise hits both alike
        plain_times.append(timed(lambda: plain_loop(rows)))
        flow_times.append(timed(flow.run))
        assert len(sink_records) == n
        sink_records.clear()
    plain, framework = statistics.median(plain_times), statistics.median(flow_times)
    print(f"\nPart 1: {n:,} small dicts, memory -> memory, trivial transform "
          f"(median of {repeat})")
    print(f"{'path':<28}{'seconds':>10}{'msg/s':>14}")
    print(f"{'plain Python loop':<28}{plain:>10.3f}{n / plain:>14,.0f}")
    print(f"{'DataFlow (inline runtime)':<28}{framework:>10.3f}{n / framework:>14,.0f}")
    ratio = framework / plain
    print(f"flow / plain = {ratio:.2f}x   (target <= 4x: {'met' if ratio <= 4 else 'MISSED'})")


def peak_rss_of_jsonl_copy(n: int) -> int:
    """Run a JSON Lines -> JSON Lines copy of n rows in a fresh process; its peak RSS in KiB."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.jsonl"
        with source.open("w") as f:
            for i in range(n):
                f.write(json.dumps({"id": i, "name": f"user-{i}", "score": i % 100}) + "\n")
        code = (
            "import sys\n"
            "from active_data_flow import DataFlow\n"
            "from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource\n"
            "class Copy(DataFlow):\n"
            f"    source = JsonLinesSource(path={str(source)!r})\n"
            f"    sink = JsonLinesSink(path={str(Path(folder) / 'out.jsonl')!r}, fsync=False)\n"
            "    def transform(self, m):\n"
            "        return {'id': m['id'], 'name': m['name'].upper()}\n"
            "r = Copy().run()\n"
            f"assert r.written == {n}, r\n"
            # VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss over fork+exec.
            "status = open('/proc/self/status').read().splitlines()\n"
            "print(next(l.split()[1] for l in status if l.startswith('VmHWM')))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        return int(out.stdout.strip())


def memory() -> None:
    small, large = peak_rss_of_jsonl_copy(100_000), peak_rss_of_jsonl_copy(1_000_000)
    print("\nPart 2: peak RSS of a JSON Lines -> JSON Lines flow (fresh process each)")
    print(f"{'rows':>12}{'peak RSS MiB':>16}")
    print(f"{100_000:>12,}{small / 1024:>16.1f}")
    print(f"{1_000_000:>12,}{large / 1024:>16.1f}")
    ratio = large / small
    print(f"1M / 100k = {ratio:.3f}x   (target <= 1.25x: {'met' if ratio <= 1.25 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    throughput(args.rows, args.repeat)
    memory()


if __name__ == "__main__":
    main()
