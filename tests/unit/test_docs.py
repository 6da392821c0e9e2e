"""The Python examples in the docs run as written (blocks of a page share one namespace)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", "docs/core.md", "docs/performance.md"]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page: str, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "amount_cents": 250000}\n')
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for number, block in enumerate(python_blocks(ROOT / page), 1):
            try:
                exec(compile(block, f"{page} block {number}", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{page} block {number} failed: {type(exc).__name__}: {exc}\n{block}")
    finally:
        os.chdir(cwd)
