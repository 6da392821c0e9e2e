"""The sink contract of ActiveDataFlow, run on this plugin's stdout sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from adf_plugin_example import StdoutSink

from active_data_flow import Sink
from active_data_flow.testing import SinkContract


class TestStdoutSink(SinkContract):
    buffers = False  # it prints each record as it is written: discard() cannot drop any

    @pytest.fixture(autouse=True)
    def _capture(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.printed: list[str] = []

    def make_sink(self, tmp_path: Path) -> Sink:
        return StdoutSink(prefix="> ")

    def read_back(self, sink: Sink) -> list[dict[str, Any]]:
        self.printed += self.capsys.readouterr().out.splitlines()
        return [json.loads(line.removeprefix("> ")) for line in self.printed]
