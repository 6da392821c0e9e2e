"""The package's layers (DESIGN §2, §9): the core imports only pydantic and the standard
library, nothing imports upward, no module is part of an import cycle, and no production
module reads a test switch."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import active_data_flow

PACKAGE = Path(active_data_flow.__file__).parent
ROOT = "active_data_flow"

CORE_MODULES = [
    "__init__.py", "catalog.py", "message.py", "connector.py", "flow.py", "runner.py",
    "runtime.py",
    "registry.py", "errors.py", "masking.py", "testing/__init__.py", "testing/fakes.py",
    "testing/_contract.py", "testing/sources.py", "testing/sinks.py", "connectors/__init__.py",
    "connectors/memory.py", "connectors/jsonl.py", "connectors/csv.py", "connectors/_files.py",
    "runtimes/__init__.py", "runtimes/inline.py", "columnar.py",
]
#: The one core module that imports the optional ``[arrow]`` extra (on first use, with a
#: clear error when it is missing); the others reach pyarrow through it.
ARROW_GATE = "columnar.py"
FORBIDDEN = ("sqlalchemy", "fastapi", "starlette", "celery", "kombu", "alembic", "jinja2",
             "click", "rich", "uvicorn", "croniter")
HEARTBEAT = f"{ROOT}.runtimes.heartbeat"

#: Module prefix -> prefixes it must not import (the layers below never import upward).
NOT_UPWARD = {
    f"{ROOT}.connectors": (f"{ROOT}.runtimes", f"{ROOT}.web", f"{ROOT}.cli"),
    f"{HEARTBEAT}.store": (f"{HEARTBEAT}.engine", f"{ROOT}.runtimes.celery", f"{ROOT}.web",
                           f"{ROOT}.cli"),
    f"{HEARTBEAT}.engine": (f"{ROOT}.runtimes.celery", f"{ROOT}.web", f"{ROOT}.cli"),
    f"{HEARTBEAT}.schedule": (f"{HEARTBEAT}.store", f"{HEARTBEAT}.engine"),
    f"{ROOT}.runtimes.celery": (f"{ROOT}.web", f"{ROOT}.cli"),
    f"{ROOT}.web": (f"{ROOT}.cli",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The package's modules ``path`` imports, anywhere in it (functions included) except
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and ast.unparse(node.test) == "TYPE_CHECKING" for n in ast.walk(node)}
    package = module_name(path) if path.name == "__init__.py" else (
        module_name(path).rpartition(".")[0])
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    yield full
                elif base in known:
                    yield base


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_only_stdlib_pydantic_and_the_core() -> None:
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", ROOT}
    for name in CORE_MODULES:
        extra = imported_roots(PACKAGE / name) - allowed - (
            {"pyarrow"} if name == ARROW_GATE else set())
        assert not extra, f"{name} imports {sorted(extra)}"


def test_no_module_imports_a_layer_above_it() -> None:
    known = source_modules()
    for name, path in known.items():
        for lower, above in NOT_UPWARD.items():
            if name == lower or name.startswith(lower + "."):
                wrong = [m for m in imports(path, known) if m.startswith(above)]
                assert not wrong, f"{name} imports {wrong}"


def test_there_is_no_import_cycle() -> None:
    known = source_modules()
    graph = {name: set(imports(path, known)) - {name} for name, path in known.items()}
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(sorted(c)) for c in cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


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


def test_the_heartbeat_runtime_class_imports_no_store_alembic_or_croniter() -> None:
    code = (
        "import sys\n"
        "from active_data_flow.runtimes.heartbeat import Heartbeat\n"
        "Heartbeat(interval='*/5 * * * *', timezone='Europe/Paris').to_dict()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'alembic', 'croniter') or '.store' in m or '.engine' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_production_module_reads_a_test_switch() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert "ADF_TEST_" not in path.read_text(), path


def test_test_connectors_are_not_installed_entry_points() -> None:
    names = {ep.name for ep in metadata.entry_points(group="active_data_flow.connectors")}
    assert "faulty" not in names
    assert {"memory", "jsonl", "csv", "sqlalchemy", "dead_letters"} <= names
