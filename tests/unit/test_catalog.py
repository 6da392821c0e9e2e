"""The catalog of code-defined flows: loading, reloading, and the one loader of `adf run`
targets."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from active_data_flow import DataFlow
from active_data_flow.catalog import FlowCatalog, import_flow_class
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import ConfigurationError

FLOW_FILE = '''
from active_data_flow import DataFlow
from active_data_flow.connectors.memory import MemorySink, MemorySource


class {cls}(DataFlow):
    name = "{name}"
    source = MemorySource(records=[{{"id": 1}}])
    sink = MemorySink(name="catalog-test")
    batch_size = {batch_size}
'''


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """An empty folder for flow files; the modules imported from it are forgotten after."""
    made = tmp_path / "flows"
    made.mkdir()
    modules, path = set(sys.modules), list(sys.path)
    yield made
    for name in set(sys.modules) - modules:
        if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    sys.path[:] = path


@pytest.fixture
def unique() -> str:
    """A suffix making module and flow names unique to the test."""
    return uuid.uuid4().hex[:8]


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, its modification time later than any before."""
    before = path.stat().st_mtime if path.exists() else None
    path.write_text(textwrap.dedent(text))
    if before is not None:
        os.utime(path, (before + 10, before + 10))
    return path


def flow_file(folder: Path, stem: str, name: str, *, cls: str = "Flow",
              batch_size: int = 1) -> Path:
    return write(folder / f"{stem}.py", FLOW_FILE.format(cls=cls, name=name,
                                                         batch_size=batch_size))


# -- loading ----------------------------------------------------------------------------
def test_a_folder_loads_the_flows_of_every_file_in_it(folder: Path, unique: str) -> None:
    flow_file(folder, f"a_{unique}", "first")
    flow_file(folder, f"b_{unique}", "second", cls="Second")
    write(folder / f"_private_{unique}.py", "raise RuntimeError('never imported')\n")
    write(folder / f"helpers_{unique}.py", "VALUE = 1\n")
    catalog = FlowCatalog()

    result = catalog.load(folder)

    assert sorted(result.flows) == ["first", "second"]
    assert result.errors == {}
    assert catalog.names() == ["first", "second"]
    assert [c.name for c in catalog.classes()] == ["first", "second"]
    first = catalog.get("first")
    assert first is not None
    assert first.__name__ == "Flow"


def test_a_module_name_loads_the_module_and_a_package_its_submodules(
    folder: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = folder / f"pkg_{unique}"
    package.mkdir()
    write(package / "__init__.py", "")
    flow_file(package, "orders", "orders")
    flow_file(folder, f"single_{unique}", "single")
    monkeypatch.syspath_prepend(str(folder))
    catalog = FlowCatalog()

    result = catalog.load(f"pkg_{unique}", f"single_{unique}")

    assert sorted(result.flows) == ["orders", "single"]
    orders = catalog.get("orders")
    assert orders is not None
    assert orders.__module__ == f"pkg_{unique}.orders"


def test_files_and_classes_load_directly(folder: Path, unique: str) -> None:
    file = flow_file(folder, f"one_{unique}", "from_file")

    class Inline(DataFlow):
        source = MemorySource(records=[])
        sinks = [MemorySink(name="catalog-inline")]

    catalog = FlowCatalog()

    result = catalog.load(file, Inline, [Inline])

    assert sorted(result.flows) == ["from_file", "inline"]
    assert catalog.get("inline") is Inline


def test_what_fails_to_load_is_reported_and_the_rest_still_loads(
    folder: Path, unique: str
) -> None:
    flow_file(folder, f"good_{unique}", "good")
    broken = write(folder / f"broken_{unique}.py", "def oops(:\n    pass\n")
    raising = write(folder / f"raising_{unique}.py", "raise RuntimeError('no config')\n")
    catalog = FlowCatalog()

    result = catalog.load(folder, folder / "missing", f"no_such_module_{unique}")

    assert list(result.flows) == ["good"]
    assert result.errors[str(broken)].startswith("SyntaxError: ")
    assert result.errors[str(broken)].endswith("(line 1)")
    assert result.errors[str(raising)] == "line 1: RuntimeError: no config"
    assert result.errors[str(folder / "missing")] == "no such file or folder"
    assert result.errors[f"no_such_module_{unique}"].startswith("ModuleNotFoundError: ")
    assert catalog.errors == result.errors
    message = catalog.missing_message("lost")
    assert message.startswith("flow 'lost' is defined in code, but it is not defined by any "
                              "loaded module; failed to load: ")
    assert "RuntimeError: no config" in message


def test_a_name_defined_by_two_classes_is_an_error(folder: Path, unique: str) -> None:
    flow_file(folder, f"one_{unique}", "twice")
    flow_file(folder, f"two_{unique}", "twice", cls="Other")
    catalog = FlowCatalog()

    result = catalog.load(folder)

    assert list(result.flows) == ["twice"]
    assert "flow name 'twice' is defined twice" in result.errors["twice"]
    with pytest.raises(ConfigurationError, match="is not a DataFlow subclass"):
        catalog.register(dict)  # type: ignore[arg-type]


def test_nothing_loaded_means_nothing_found(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADF_FLOWS", raising=False)
    catalog = FlowCatalog()

    assert catalog.get("anything") is None
    assert "was it renamed or deleted? Run `adf sync`" in catalog.missing_message("anything")


def test_adf_flows_is_loaded_once_when_nothing_else_was(
    folder: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow_file(folder, f"env_{unique}", "from_env")
    monkeypatch.setenv("ADF_FLOWS", str(folder))
    catalog = FlowCatalog()

    found = catalog.get("from_env")

    assert found is not None
    assert catalog.load_defaults().flows == {}  # done already
    catalog.clear()
    assert catalog.names() == []


def test_threads_asking_while_adf_flows_loads_wait_for_it(
    folder: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module takes a while to import: every thread asking meanwhile must find the flow
    # (it used to be "not defined by any loaded module" for all but the first).
    write(folder / f"slow_{unique}.py", FLOW_FILE.format(cls="Slow", name="slow", batch_size=1)
          + "\nimport time\ntime.sleep(0.3)\n")
    monkeypatch.setenv("ADF_FLOWS", str(folder))
    catalog = FlowCatalog()
    found: list[object] = []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait()
        found.append(catalog.get("slow"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(found) == 4
    assert all(flow is not None and flow.__name__ == "Slow" for flow in found)


# -- changes on disk --------------------------------------------------------------------
def test_a_changed_file_is_reloaded_when_its_flow_is_looked_up(
    folder: Path, unique: str
) -> None:
    file = flow_file(folder, f"live_{unique}", "live", batch_size=1)
    catalog = FlowCatalog()
    catalog.load(folder)
    before = catalog.get("live")
    assert before is not None
    assert before.batch_size == 1

    flow_file(folder, f"live_{unique}", "live", batch_size=2)

    after = catalog.get("live")
    assert after is not None
    assert after is not before
    assert after.batch_size == 2
    assert file.exists()


def test_a_broken_change_drops_the_flow_until_it_is_fixed(folder: Path, unique: str) -> None:
    file = flow_file(folder, f"fragile_{unique}", "fragile")
    catalog = FlowCatalog()
    catalog.load(folder)

    write(file, "class Broken(:\n")

    assert catalog.get("fragile") is None
    assert catalog.errors[f"fragile_{unique}"].startswith("SyntaxError: ")
    assert "SyntaxError" in catalog.missing_message("fragile")
    flow_file(folder, f"fragile_{unique}", "fragile", batch_size=3)
    fixed = catalog.get("fragile")
    assert fixed is not None
    assert fixed.batch_size == 3
    assert catalog.errors == {}


def test_a_new_file_in_a_loaded_folder_is_found(folder: Path, unique: str) -> None:
    flow_file(folder, f"old_{unique}", "old")
    catalog = FlowCatalog()
    catalog.load(folder)
    assert catalog.get("new") is None

    flow_file(folder, f"new_{unique}", "new")

    assert catalog.get("new") is not None
    assert catalog.names() == ["new", "old"]


def test_a_flow_file_named_like_a_standard_module_loads_by_path(folder: Path) -> None:
    flow_file(folder, "copy", "copy_flow")
    catalog = FlowCatalog()

    result = catalog.load(folder)

    assert list(result.flows) == ["copy_flow"]
    import copy

    assert hasattr(copy, "deepcopy")  # the standard library's copy is untouched


# -- import_flow_class ------------------------------------------------------------------
def test_import_flow_class_takes_a_file_or_a_module(
    folder: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = flow_file(folder, f"target_{unique}", "target", cls="Target")
    monkeypatch.syspath_prepend(str(folder))

    by_file = import_flow_class(f"{file}:Target")
    by_module = import_flow_class(f"target_{unique}:Target")

    assert by_file.name == by_module.name == "target"


def test_import_flow_class_errors_are_one_line(folder: Path, unique: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    good = flow_file(folder, f"holder_{unique}", "holder", cls="Holder")
    write(folder / f"values_{unique}.py", "NUMBER = 1\nclass Plain:\n    pass\n")
    broken = write(folder / f"broken_{unique}.py", "def oops(:\n")
    raising = write(folder / f"raising_{unique}.py", "import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(folder))
    cases = {
        "Holder": "expected MODULE:FlowClass or path/to/file.py:FlowClass",
        f"{folder}/nope.py:Holder": "no such file",
        f"{broken}:Oops": "SyntaxError",
        f"{raising}:Flow": "ModuleNotFoundError: No module named 'no_such_dependency_xyz'",
        f"no_module_{unique}:Flow": f"no_module_{unique}",
        f"{good}:Missing": "has no attribute 'Missing'",
        f"values_{unique}:NUMBER": "NUMBER is not a DataFlow subclass (it is an int object",
        f"values_{unique}:Plain": "Plain is not a DataFlow subclass (it is another class",
    }
    for target, expected in cases.items():
        with pytest.raises(ConfigurationError) as caught:
            import_flow_class(target)
        message = str(caught.value)
        assert expected in message, (target, message)
        assert "\n" not in message, (target, message)
        assert caught.value.option == "target"
