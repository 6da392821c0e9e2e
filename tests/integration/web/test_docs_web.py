"""The Python examples of docs/web.md run as written (in a scratch folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.integration.web.conftest import ROOT


def test_the_web_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADF_WEB_PASSWORD", "a long password")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs/web.md").read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {"__name__": "docs_web"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/web.md block {number}", "exec"), namespace)
    from fastapi.testclient import TestClient

    with TestClient(namespace["host"]) as client:  # type: ignore[arg-type]
        assert client.get("/active_data_flow/api/flows",
                          auth=("admin", os.environ["ADF_WEB_PASSWORD"])).status_code == 200
