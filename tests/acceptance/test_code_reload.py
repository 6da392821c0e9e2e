"""A running ``adf worker`` picks up changed and added flow code without a restart, and never
runs a stored spec against code that describes the flow differently (a real worker process,
a real SQLite store, flows in a folder the test edits)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from active_data_flow.runtimes.heartbeat.store import FlowStore, RunRecord

FLOW = textwrap.dedent("""
    from active_data_flow import DataFlow
    from active_data_flow.connectors.jsonl import JsonLinesSink
    from active_data_flow.connectors.memory import MemorySource

    class {cls}(DataFlow):
        source = MemorySource(records=[{{"id": 1}}, {{"id": 2}}])
        sink = JsonLinesSink(path={out!r})
        batch_size = {batch}

        def transform(self, message):
            return {{"id": message["id"], "version": {version}}}
""")


def write_flow(folder: Path, module: str, cls: str, out: Path, version: int,
               batch: int = 10) -> None:
    path = folder / f"{module}.py"
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(FLOW.format(cls=cls, out=str(out), version=version, batch=batch))
    # A later mtime, even on a file system with one-second timestamps.
    os.utime(path, (before + 2, before + 2) if before else None)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    flows = tmp_path / "data_flows"
    flows.mkdir()
    env = {**os.environ, "ADF_DATABASE_URL": f"sqlite:///{tmp_path / 'adf.db'}",
           "ADF_FLOWS": str(flows), "PYTHONDONTWRITEBYTECODE": "1"}
    return tmp_path, env


def adf(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "active_data_flow.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def run_and_wait(store: FlowStore, name: str, timeout: float = 30.0) -> RunRecord:
    """Run the flow over its source again (cursor reset) on the worker; its final record."""
    store.reset_cursor(name)
    run = store.trigger(name)
    deadline = time.monotonic() + timeout
    while (record := store.get_run(run.id)).ended_at is None:
        assert time.monotonic() < deadline, f"run {run.id} of {name} did not end"
        time.sleep(0.05)
    return record


def versions(path: Path) -> list[int]:
    return [json.loads(line)["version"] for line in path.read_text().splitlines()]


def test_a_running_worker_runs_changed_and_added_flow_code(
    project: tuple[Path, dict[str, str]],
) -> None:
    root, env = project
    flows, out, added_out = root / "data_flows", root / "out.jsonl", root / "added.jsonl"
    write_flow(flows, "copy", "Copy", out, version=1)
    assert adf(env, "db", "upgrade").returncode == 0
    assert adf(env, "sync").returncode == 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "active_data_flow.cli", "worker", "--interval", "0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = FlowStore(env["ADF_DATABASE_URL"])
    try:
        assert run_and_wait(store, "copy").status == "succeeded"
        assert versions(out) == [1, 1]

        # The transform's body changes: the worker runs the new code (no sync needed).
        write_flow(flows, "copy", "Copy", out, version=2)
        assert run_and_wait(store, "copy").status == "succeeded"
        assert versions(out)[-2:] == [2, 2]

        # A new flow file, then `adf sync`: the worker runs it without a restart.
        write_flow(flows, "added", "Added", added_out, version=7)
        assert adf(env, "sync").returncode == 0
        assert run_and_wait(store, "added").status == "succeeded"
        assert versions(added_out) == [7, 7]

        # An option changes but the store still holds the old spec: refused, and said so...
        write_flow(flows, "copy", "Copy", out, version=3, batch=1)
        stale = run_and_wait(store, "copy")
        assert stale.status == "failed"
        assert "adf sync" in (stale.error or "")
        assert "describes the flow differently" in (store.get_flow("copy").code_error or "")
        assert versions(out)[-1] == 2  # nothing written with the mismatched spec
        # ... until `adf sync` records the new spec: then the new code runs.
        assert adf(env, "sync").returncode == 0
        assert run_and_wait(store, "copy").status == "succeeded"
        assert versions(out)[-2:] == [3, 3]
        assert store.get_flow("copy").code_error is None
    finally:
        store.close()
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
