"""Before/after: run one benchmark script in two checkouts, alternating, and compare medians.

A refactoring must give "the same figures within noise". On a shared machine two separate
runs are not comparable, so this driver runs ``bench/NAME.py ARGS`` in a reference checkout
and in this one by turns (reference, current, reference, current, ...), each with its own
interpreter, and prints, for every line of the benchmark's output that carries figures, the
median of each figure across rounds for both sides and the ratio current / reference.

    python3 bench/revisions.py BASE_DIR NAME [--rounds 5] [--base-python PY] -- [ARGS...]

``BASE_DIR`` is the reference checkout (e.g. ``git worktree add --detach /tmp/base REV``
with its own ``.venv``). Lines are matched by their words with the figures taken out, so the
benchmark's own table layout is kept; figures are the numbers on the line (``1,234``,
``12.5ms``, ``3.1x``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def run(checkout: Path, python: Path, name: str, args: list[str]) -> str:
    """One run of the benchmark in ``checkout``; its standard output."""
    script = checkout / "bench" / f"{name}.py"
    result = subprocess.run([str(python), str(script), *args], cwd=checkout, text=True,
                            capture_output=True)
    if result.returncode != 0:
        sys.exit(f"{script} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def figures(output: str) -> dict[str, list[float]]:
    """Each line that carries figures, keyed by its words, with its numbers."""
    lines: dict[str, list[float]] = {}
    for line in output.splitlines():
        numbers = NUMBER.findall(line)
        key = " ".join(NUMBER.sub("#", line).split())
        if numbers and re.search(r"[A-Za-z]", key) and key not in lines:
            lines[key] = [float(n.replace(",", "")) for n in numbers]
    return lines


def medians(outputs: list[str]) -> dict[str, list[float]]:
    """Per line, the median of each figure over the rounds that printed that line."""
    gathered: dict[str, list[list[float]]] = {}
    for output in outputs:
        for key, values in figures(output).items():
            gathered.setdefault(key, []).append(values)
    return {key: [statistics.median(v[i] for v in rounds if len(v) > i)
                  for i in range(max(len(v) for v in rounds))]
            for key, rounds in gathered.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="the reference checkout")
    parser.add_argument("name", help="benchmark script under bench/, without .py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base-python", type=Path, help="default: BASE/.venv/bin/python")
    parser.add_argument("--python", type=Path, default=Path(sys.executable))
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    options = parser.parse_args(argv[:split])
    args = argv[split + 1:]  # the benchmark's own arguments
    base_python = options.base_python or options.base / ".venv" / "bin" / "python"
    before: list[str] = []
    after: list[str] = []
    for i in range(options.rounds):
        for label, outputs, checkout, python in (("before", before, options.base, base_python),
                                                 ("after", after, HERE, options.python)):
            print(f"round {i + 1}/{options.rounds}: {label}", flush=True)
            outputs.append(run(checkout, python, options.name, args))
    old, new = medians(before), medians(after)
    print(f"\n{options.name} {' '.join(args)}: medians of {options.rounds} alternating rounds")
    for key, values in new.items():
        if key not in old:
            continue
        print(f"\n{key}")
        print("  before " + "  ".join(f"{v:,.2f}" for v in old[key]))
        print("  after  " + "  ".join(f"{v:,.2f}" for v in values))
        print("  ratio  " + "  ".join(f"{n / o:.2f}" if o else "-"
                                      for o, n in zip(old[key], values, strict=False)))


if __name__ == "__main__":
    main()
