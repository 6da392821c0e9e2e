"""A separately packaged plugin registers connectors through entry points alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "adf_plugin_example"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed (with pip, its own build) into a private folder."""
    target = tmp_path_factory.mktemp("plugin")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True,
    )
    return target


def run_python(code: str, plugin_path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_plugin_connector_resolves_by_type_name(plugin_path: Path) -> None:
    code = (
        "import sys\n"
        "from active_data_flow import Source, Sink\n"
        "assert 'adf_plugin_example' not in sys.modules\n"
        "source = Source.from_dict({'type': 'range', 'config': {'start': 2, 'stop': 5}})\n"
        "print(type(source).__module__, [m['n'] for m in source])\n"
        "sink = Sink.from_dict({'type': 'stdout', 'config': {'prefix': '> '}})\n"
        "sink.write({'n': 1}); sink.flush()\n"
    )
    assert run_python(code, plugin_path).splitlines() == [
        "adf_plugin_example [2, 3, 4]", '> {"n": 1}',
    ]


def test_the_plugin_has_its_own_version(plugin_path: Path) -> None:
    code = "from importlib.metadata import version; print(version('adf-plugin-example'))"
    assert run_python(code, plugin_path) == "0.3.1"


def test_plugin_types_are_listed_and_usable_in_a_flow(plugin_path: Path) -> None:
    code = (
        "from active_data_flow import DataFlow\n"
        "from active_data_flow.registry import available_connectors\n"
        "print('range' in available_connectors('source'))\n"
        "class F(DataFlow):\n"
        "    source = {'type': 'range', 'config': {'stop': 3}}\n"
        "    sink = {'type': 'stdout', 'config': {}}\n"
        "print(F().run(cursor=0).cursor)\n"
    )
    assert run_python(code, plugin_path).splitlines() == ["True", '{"n": 1}', '{"n": 2}', "2"]
