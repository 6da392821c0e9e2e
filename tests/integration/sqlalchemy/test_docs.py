"""The examples of docs/sqlalchemy.md run as written (one namespace, top to bottom)."""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[3] / "docs" / "sqlalchemy.md"


def test_the_sqlalchemy_page_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 8
    # A real module: SQLAlchemy resolves the models' annotations through sys.modules.
    module = types.ModuleType("adf_docs_sqlalchemy")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for number, block in enumerate(blocks, 1):
            try:
                exec(compile(block, f"docs/sqlalchemy.md block {number}", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the failure message is the point
                pytest.fail(f"block {number} failed: {type(exc).__name__}: {exc}\n{block}")
    finally:
        os.chdir(cwd)
        del sys.modules[module.__name__]
