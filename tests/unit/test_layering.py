"""The core imports only pydantic and the standard library (DESIGN §2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import active_data_flow

PACKAGE = Path(active_data_flow.__file__).parent

CORE_MODULES = [
    "__init__.py", "message.py", "connector.py", "flow.py", "runtime.py", "registry.py",
    "errors.py", "masking.py", "testing.py", "connectors/__init__.py", "connectors/memory.py",
    "connectors/jsonl.py", "connectors/csv.py", "connectors/_files.py",
    "runtimes/__init__.py", "runtimes/inline.py",
]
FORBIDDEN = ("sqlalchemy", "fastapi", "starlette", "celery", "kombu", "alembic", "jinja2",
             "click", "rich", "uvicorn")


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_only_stdlib_pydantic_and_the_core() -> None:
    allowed = set(sys.stdlib_module_names) | {"pydantic", "active_data_flow"}
    for name in CORE_MODULES:
        extra = imported_roots(PACKAGE / name) - allowed
        assert not extra, f"{name} imports {sorted(extra)}"


def test_core_modules_import_no_integration_layer() -> None:
    for name in CORE_MODULES:
        source = (PACKAGE / name).read_text()
        for layer in ("connectors.sqlalchemy", "runtimes.heartbeat", "runtimes.celery",
                      "active_data_flow.web", "active_data_flow.cli"):
            assert f"import {layer}" not in source, name
            assert f"{layer} import" not in source, name


def test_importing_and_running_the_core_loads_no_integration() -> None:
    code = (
        "import sys, active_data_flow, active_data_flow.testing\n"
        "from active_data_flow import DataFlow, Source\n"
        "from active_data_flow.connectors import memory, jsonl, csv\n"
        "Source.from_dict({'type': 'jsonl', 'config': {'path': 'x'}})\n"
        "class F(DataFlow):\n"
        "    source = memory.MemorySource(records=[{'a': 1}])\n"
        "    sink = memory.MemorySink()\n"
        "F().run()\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
