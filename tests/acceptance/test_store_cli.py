"""The store commands of ``adf``: init, new flow, sync, list, runs, heartbeat, run, pause,
resume, db and worker, against a real SQLite store in a temporary project folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from active_data_flow.catalog import catalog
from active_data_flow.cli import main
from active_data_flow.runtimes.heartbeat import FlowStore

FAILING_FLOW = textwrap.dedent("""
    from active_data_flow import DataFlow
    from active_data_flow.connectors.memory import MemorySink, MemorySource
    from active_data_flow.runtimes.heartbeat import Heartbeat

    class BrokenFlow(DataFlow):
        source = MemorySource(records=[{"id": 1}])
        sink = MemorySink(name="broken")
        runtime = Heartbeat(interval=60)

        def transform(self, message):
            raise ValueError("cannot handle id " + str(message["id"]))
""")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project folder as the working directory, with no ADF_* settings."""
    saved = {v: os.environ.pop(v) for v in SETTINGS if v in os.environ}
    monkeypatch.chdir(tmp_path)
    catalog.clear()
    yield tmp_path
    catalog.clear()
    # The CLI exports adf.toml's settings into this process's environment, as it would into
    # its own process; put the environment back for the tests that follow.
    for variable in SETTINGS:
        os.environ.pop(variable, None)
    os.environ.update(saved)


SETTINGS = ("ADF_DATABASE_URL", "ADF_FLOWS", "ADF_CONFIG", "ADF_HEARTBEAT_TOKEN")


def adf(*args: str) -> Result:
    # Each invocation reads adf.toml again, as a new process would.
    for variable in SETTINGS:
        os.environ.pop(variable, None)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_init_writes_config_example_flow_and_a_migrated_store(project: Path) -> None:
    result = adf("init")
    assert result.exit_code == 0, result.output
    assert 'database_url = "sqlite:///active_data_flow.db"' in (project / "adf.toml").read_text()
    assert (project / "data_flows" / "hello_flow.py").is_file()
    store = FlowStore(f"sqlite:///{project / 'active_data_flow.db'}")
    assert store.is_current()
    assert store.get_flow("hello_flow").status == "active"
    store.close()
    again = adf("init")
    assert "exists" in again.output  # nothing overwritten without --force


def test_a_flow_goes_from_generator_to_heartbeat_to_history(project: Path) -> None:
    adf("init", "--no-example")
    result = adf("new", "flow", "CopyOrders")
    assert result.exit_code == 0, result.output
    source = (project / "data_flows" / "copy_orders.py").read_text()
    assert "class CopyOrders(DataFlow):" in source
    compile(source, "copy_orders.py", "exec")
    (project / "data").mkdir()
    (project / "data" / "copy_orders.jsonl").write_text('{"id": 1}\n{"id": 2}\n')

    assert "created" in adf("sync").output
    listing = adf("list")
    assert "copy_orders" in listing.output
    assert "every 300s" in listing.output

    beat = adf("heartbeat")
    assert beat.exit_code == 0, beat.output
    assert "claimed 1, succeeded 1" in beat.output
    assert (project / "out" / "copy_orders.jsonl").read_text() == '{"id":1}\n{"id":2}\n'

    history = adf("runs", "copy_orders")
    assert "succeeded" in history.output
    assert "pending" in history.output  # the next slot is scheduled
    assert "offset=20" in adf("list").output  # the saved cursor


def test_adf_run_name_runs_a_stored_flow_now_and_records_it(project: Path) -> None:
    adf("init")
    result = adf("run", "--json", "hello_flow")
    assert result.exit_code == 0, result.output
    assert '"status": "succeeded"' in result.output
    assert '"trigger": "cli"' in result.output
    assert (project / "out" / "hello.jsonl").read_text().count("Hello") == 3


def test_a_failing_flow_fails_its_heartbeat_and_shows_its_error(project: Path) -> None:
    adf("init")
    (project / "data_flows" / "broken_flow.py").write_text(FAILING_FLOW)
    adf("sync")
    beat = adf("heartbeat")
    assert beat.exit_code == 1
    assert "cannot handle id 1" in beat.output
    assert "hello_flow" in beat.output  # the other due flow still ran
    runs = adf("runs", "--errors", "broken_flow")
    assert "Traceback" in runs.output
    assert "ValueError" in runs.output
    assert adf("run", "broken_flow").exit_code == 1


def test_pause_and_resume(project: Path) -> None:
    adf("init")
    assert "paused" in adf("pause", "hello_flow").output
    assert "claimed 0" in adf("heartbeat").output
    assert "active" in adf("resume", "hello_flow").output
    assert "claimed 1" in adf("heartbeat").output


def test_unknown_flow_and_broken_modules_are_one_line_errors(project: Path) -> None:
    adf("init")
    for command in ("pause", "resume", "run", "runs"):
        missing = adf(command, "no_such_flow")
        assert missing.exit_code == 2, command
        assert "no_such_flow" in missing.output
        assert "Traceback" not in missing.output
    (project / "data_flows" / "syntax_error.py").write_text("class Oops(:\n")
    synced = adf("sync")
    assert synced.exit_code == 2
    assert "could not load" in synced.output
    assert "syntax_error" in synced.output


def test_db_commands_report_and_migrate(project: Path) -> None:
    (project / "adf.toml").write_text('database_url = "sqlite:///store.db"\n')
    assert "empty" in adf("db", "current").output
    assert "-> adf" in adf("db", "upgrade").output
    assert "up to date" in adf("db", "current").output
    assert "base" in adf("db", "downgrade", "base").output


def test_a_bad_config_file_names_the_setting(project: Path) -> None:
    (project / "adf.toml").write_text('database = "sqlite:///x.db"\n')
    result = adf("list")
    assert result.exit_code == 2
    assert "unknown setting 'database' (did you mean 'database_url'?)" in result.output


def test_new_flow_refuses_bad_names_and_existing_files(project: Path) -> None:
    assert adf("new", "flow", "class").exit_code == 2
    assert adf("new", "flow", "sync_users").exit_code == 0
    assert adf("new", "flow", "sync_users").exit_code == 1


def test_worker_stops_gracefully_on_sigterm(project: Path) -> None:
    """A real `adf worker` process: SIGTERM ends it cleanly, leaving no run running."""
    adf("init")
    process = subprocess.Popen(
        [sys.executable, "-m", "active_data_flow.cli", "worker", "--interval", "0.2"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 30
        out = project / "out" / "hello.jsonl"
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.exists(), "the worker never ran the due flow"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "worker stopped" in output
    store = FlowStore(f"sqlite:///{project / 'active_data_flow.db'}")
    assert store.list_runs(flow="hello_flow", status="running", offset=0, limit=10).total == 0
    store.close()
