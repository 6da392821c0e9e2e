"""A plugin runs the contract suites on its own connectors: the example plugin's tests do,
and the plugin guide shows one of them exactly as it is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "adf_plugin_example"


def test_the_example_plugin_passes_the_contract_suites(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "pytest")],
        cwd=PLUGIN, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout.strip().splitlines()[-1]
    # Skipped, with their reasons: the range's fixed records, the sink's lack of a buffer.
    assert re.match(r"\d+ passed, 2 skipped in ", summary), summary
    assert "declares arbitrary_records = False" in out.stdout
    assert "declares buffers = False" in out.stdout


def test_the_plugin_guide_shows_the_example_plugins_contract_test() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    assert (PLUGIN / "tests" / "test_range_source.py").read_text() in blocks
