"""The Python examples of docs/connectors.md run as written (one namespace per page), with
the local Redis and the test API standing in for the reader's."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.integration.connectors.api import State, served

ROOT = Path(__file__).resolve().parents[3]


def test_connectors_page_examples_run(tmp_path: Path, redis_url: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs/connectors.md").read_text(),
                        flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    with served(State(items=[{"id": i} for i in range(120)])) as api:
        monkeypatch.setenv("ADF_EXAMPLE_API", api)
        namespace: dict[str, object] = {"__name__": "docs_connectors"}
        for number, block in enumerate(blocks, 1):
            try:
                exec(compile(block, f"connectors.md block {number}", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the message is the point
                pytest.fail(f"block {number} failed: {type(exc).__name__}: {exc}\n{block}")
    assert os.path.exists(tmp_path / "out.jsonl")
