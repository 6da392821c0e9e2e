"""The Python examples in the docs run as written, each block on its own (a fresh namespace),
except a block right after the marker line ``<!-- continues the previous block -->``, which
runs in the namespace of the block before it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", "docs/core.md", "docs/performance.md"]


CONTINUES = "<!-- continues the previous block -->"


def python_blocks(page: Path) -> list[tuple[bool, str]]:
    """``(continues the previous block, code)`` for each Python block of ``page``."""
    found = re.findall(r"(?:^(<!-- continues the previous block -->)\n)?```python\n(.*?)```",
                       page.read_text(), flags=re.S | re.M)
    return [(bool(marker), code) for marker, code in found]


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page: str, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "amount_cents": 250000}\n')
    namespace: dict[str, object] = {}
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for number, (continues, block) in enumerate(python_blocks(ROOT / page), 1):
            if not continues:
                namespace = {"__name__": f"docs_{page}_{number}"}
            try:
                exec(compile(block, f"{page} block {number}", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{page} block {number} failed: {type(exc).__name__}: {exc}\n{block}")
    finally:
        os.chdir(cwd)


def test_a_block_runs_alone_unless_marked_as_continuing(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"```python\nx = 1\n```\n\ntext\n\n{CONTINUES}\n```python\nx += 1\n```\n"
                    "```python\ny = 2\n```\n")
    assert python_blocks(page) == [(False, "x = 1\n"), (True, "x += 1\n"), (False, "y = 2\n")]


def test_the_core_page_needs_no_continuation() -> None:
    """docs/core.md promises that every block runs on its own."""
    assert not any(continues for continues, _ in python_blocks(ROOT / "docs/core.md"))
