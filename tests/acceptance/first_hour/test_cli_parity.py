"""Issue 11, items 8-11 and 14, through the user's door: ``adf`` subprocesses in a fresh
project folder whose flow store is SQLite, PostgreSQL or MariaDB.

The walk: ``adf init``, ``adf new flow`` (the next steps in the order that works), a flow
that dead-letters, one that fails half-way, a source whose ``each()`` takes no cursor, a
``@daily`` schedule; then ``adf trigger``, ``adf runs`` (every flow), ``adf cursor``,
``adf dead-letters`` (list, replay, discard), ``--log-format json``, ``adf worker``'s log
lines, and a CSV export's datetimes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

FLOWS = textwrap.dedent('''
    from active_data_flow import DataFlow, Message, Source, register_connector
    from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource
    from active_data_flow.connectors.memory import MemorySink, MemorySource
    from active_data_flow.runtimes.heartbeat import DeadLetterSink, Heartbeat

    BROKEN = {broken}


    class Orders(DataFlow):
        """Dead-letters the orders whose id is in BROKEN."""

        source = JsonLinesSource(path="data/orders.jsonl")
        sink = JsonLinesSink(path="out/orders.jsonl")
        runtime = Heartbeat(interval=3600, batch_size=100)
        on_error = "dead_letter"
        dead_letter_sink = DeadLetterSink()

        def transform(self, message: Message) -> dict:
            if message["id"] in BROKEN:
                raise ValueError(f"order {{message['id']}} has no customer")
            return dict(message)


    class HalfWay(DataFlow):
        """Fails on its 7th message, after two batches of 3 were written."""

        source = MemorySource(records=[{{"id": i}} for i in range(1, 11)])
        sink = MemorySink(name="half_way")
        runtime = Heartbeat(interval=3600, batch_size=3)

        def transform(self, message: Message) -> dict:
            if message["id"] == 7:
                raise ValueError("cannot price order 7")
            return dict(message)


    @register_connector("seed_letters")
    class SeedLetters(Source):
        """The seed's contract: each() takes no cursor and yields plain dicts."""

        def each(self):
            for letter in "abc":
                yield {{"letter": letter}}


    class SeedFlow(DataFlow):
        source = SeedLetters()
        sink = MemorySink(name="seed")
        runtime = Heartbeat(interval="@daily")


    class NotAFlow:
        pass
''')

ORDERS = [{"id": i, "customer": f"c{i}"} for i in range(1, 11)]


class Project:
    """A project folder and its store; ``adf(...)`` runs the command as a user would."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root, self.database_url = root, database_url

    def adf(self, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
        env["COLUMNS"] = "250"  # rich folds nothing at this width
        done = subprocess.run([sys.executable, "-m", "active_data_flow.cli", *args],
                              cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=180)
        if code is not None:
            assert done.returncode == code, (args, done.stdout, done.stderr)
        return done

    def write_flows(self, broken: set[int]) -> None:
        (self.root / "data_flows" / "shop.py").write_text(FLOWS.format(broken=sorted(broken)))


def make_project(tmp_path: Path, database_url: str) -> Project:
    """``adf init`` in an empty folder, with the store on ``database_url``, and the shop's
    flows, synced."""
    made = Project(tmp_path, database_url)
    made.adf("init", "--database", database_url, "--no-example")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.jsonl").write_text(
        "".join(json.dumps(o) + "\n" for o in ORDERS))
    made.write_flows(broken={2, 4, 6, 8, 10})
    assert "created" in made.adf("sync").stdout
    return made


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Project:
    """The shop on each of SQLite, PostgreSQL and MariaDB (for what the store does)."""
    return make_project(tmp_path, db_url)


@pytest.fixture
def local_project(tmp_path: Path, sqlite_url: str) -> Project:
    """The shop on SQLite (for what does not depend on the store's database)."""
    return make_project(tmp_path, sqlite_url)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stdout + result.stderr).strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    return text


def json_lines(stderr: str) -> list[dict[str, object]]:
    """Every stderr line parsed as JSON (a line that is not one fails the test)."""
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_new_flow_prints_sync_before_run(local_project: Project) -> None:
    project = local_project
    out = project.adf("new", "flow", "copy_orders").stdout
    assert out.index("adf sync") < out.index("adf run copy_orders") < out.index("adf worker")
    text = (project.root / "data_flows" / "copy_orders.py").read_text()
    assert text.index("adf sync") < text.index("adf run copy_orders")


def test_run_names_a_class_that_is_not_a_flow_in_words(local_project: Project) -> None:
    project = local_project
    result = project.adf("run", "data_flows/shop.py:NotAFlow", code=2)
    assert one_line(result).startswith(
        "Error: data_flows/shop.py:NotAFlow is not a DataFlow subclass")
    assert "Meta" not in result.stderr  # no metaclass name


def test_a_failing_transform_is_reported_where_it_failed(project: Project) -> None:
    failed = project.adf("run", "half_way", code=1)
    expected = ("ValueError: cannot price order 7 (flow 'half_way' failed at message 7 "
                "(position 6, key 7) after reading 7 message(s) and writing 6; resume after "
                "cursor 5)")
    assert expected in " ".join(failed.stderr.split())
    row = next(line for line in project.adf("runs", "half_way").stdout.splitlines()
               if "│ failed " in line)
    assert re.search(r"│\s+7\s+│\s+6\s+│", row), row  # read 7, written 6
    assert "cursor 5" in project.adf("cursor", "half_way").stdout


def test_a_source_whose_each_takes_no_cursor_runs_every_time_from_the_start(
        project: Project) -> None:
    for _ in range(2):
        ran = json.loads(project.adf("run", "--json", "seed_flow").stdout)
        assert (ran["status"], ran["read"], ran["written"]) == ("succeeded", 3, 3)
    assert "cursor none" in project.adf("cursor", "seed_flow").stdout


def test_trigger_runs_and_cursor_work_on_the_store(project: Project) -> None:
    queued = project.adf("trigger", "orders").stdout
    assert re.search(r"orders: run \d+ queued \(pending, due", queued), queued
    assert project.adf("trigger", "no_such_flow", code=2).stderr.strip() == (
        "Error: no flow named 'no_such_flow' in the store")

    every = project.adf("runs").stdout
    assert "Runs of every flow" in every
    assert {"orders", "half_way", "seed_flow"} <= set(re.findall(r"│ (\w+)\s+│ +\d+ │", every))
    assert re.search(r"│ due (now|in \d+[smhd]|\d+[smhd] ago)", every), every

    listing = project.adf("list").stdout
    assert "0 0 * * *" in listing  # Heartbeat(interval="@daily")

    project.adf("run", "orders", code=0)
    assert "cursor line=10" in project.adf("cursor", "orders").stdout
    assert "-> 3" in project.adf("cursor", "orders", "--set", "3").stdout
    assert "-> none (reads from the beginning)" in project.adf(
        "cursor", "orders", "--reset").stdout
    bad = project.adf("cursor", "orders", "--set", "abc", code=2)
    assert "not valid JSON" in bad.stderr
    assert "give --reset or --set" in project.adf(
        "cursor", "orders", "--reset", "--set", "1", code=2).stderr


def test_dead_letters_are_listed_replayed_and_discarded(project: Project) -> None:
    run = project.adf("--log-format", "json", "run", "orders")
    warnings = [e for e in json_lines(run.stderr) if e["level"] == "WARNING"]
    # Five messages dead-lettered in one batch: one warning, naming the flow and the run.
    assert [e["message"] for e in warnings] == [
        "flow orders: 5 message(s) dead-lettered in batch 1 (first: transform failed at "
        "position {'line': 2, 'offset': 56}: ValueError: order 2 has no customer)"]
    assert warnings[0]["flow"] == "orders"
    assert isinstance(warnings[0]["run_id"], int)

    listed = project.adf("dead-letters", "orders").stdout
    assert "Dead letters of orders (5)" in listed
    assert "order 10 has no customer" in listed
    letters = [json.loads(line) for line in project.adf(
        "dead-letters", "orders", "--json").stdout.splitlines()]
    ids = sorted(letter["id"] for letter in letters)
    assert len(ids) == 5

    assert "--id ID (repeatable) or --all" in project.adf(
        "dead-letters", "orders", "--replay", code=2).stderr
    again = project.adf("dead-letters", "orders", "--replay", "--id", str(ids[0]), code=1)
    assert "orders: replayed 0, failed again 1" in again.stdout
    assert f"letter {ids[0]}: ValueError: order 2 has no customer" in again.stderr

    discarded = project.adf("dead-letters", "orders", "--discard", "--id", str(ids[-1]))
    assert "orders: discarded 1 dead letter(s)" in discarded.stdout

    project.write_flows(broken=set())  # the bug is fixed
    project.adf("sync")
    replayed = project.adf("dead-letters", "orders", "--replay", "--all").stdout
    assert "orders: replayed 4, failed again 0 (4 record(s) written)" in replayed
    assert "Dead letters of orders (0)" in project.adf("dead-letters", "orders").stdout
    history = project.adf("dead-letters", "orders", "--include-replayed").stdout
    assert history.count("replayed") >= 4
    written = (project.root / "out" / "orders.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in written) == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_json_logs_carry_the_flow_and_the_run(project: Project) -> None:
    beat = project.adf("-v", "--log-format", "json", "heartbeat", code=1)  # half_way fails
    entries = json_lines(beat.stderr)
    assert entries
    assert all({"ts", "level", "logger", "message"} <= e.keys() for e in entries)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(e["ts"]))
               for e in entries)
    ended = {e["flow"]: e for e in entries if e.get("action") in ("run_succeeded",
                                                                    "run_failed")}
    assert set(ended) == {"orders", "half_way"}  # seed_flow runs @daily: not due yet
    assert ended["half_way"]["level"] == "WARNING"
    assert "failed at message 7" in str(ended["half_way"]["message"])
    assert re.search(r"\(\d{1,3}(,\d{3})* rows/s\)", str(ended["orders"]["message"]))
    assert all(isinstance(e["run_id"], int) for e in ended.values())

    project.adf("trigger", "orders")
    text = project.adf("-v", "heartbeat").stderr  # the same, as text
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z INFO \S+: run \d+ of orders started",
                     text, re.M), text


def test_worker_logs_runs_with_timestamps_and_is_quiet_when_idle(
        local_project: Project) -> None:
    project = local_project
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "active_data_flow.cli", "worker", "--interval", "0.2"],
        cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (project.root / "out" / "orders.jsonl").exists():
            assert time.monotonic() < deadline, "the worker never ran orders"
            time.sleep(0.1)
        time.sleep(1.5)  # several idle beats
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) "
    assert all(re.match(stamp, line) for line in lines), lines
    assert "claimed 0" not in err  # idle beats are debug-level
    assert re.search(r"run \d+ of orders succeeded: read 10, written 5", err), err
    assert "worker stopped after" in err


def test_throughput_and_csv_datetimes_read_alike(local_project: Project,
                                                 tmp_path: Path) -> None:
    project = local_project
    (tmp_path / "export.py").write_text(textwrap.dedent('''
        from datetime import date, datetime, timezone
        from active_data_flow import DataFlow
        from active_data_flow.connectors.csv import CsvSink
        from active_data_flow.connectors.memory import MemorySource

        class Export(DataFlow):
            source = MemorySource(records=[
                {"id": i, "at": datetime(2026, 1, 2, 3, 4, 5), "day": date(2026, 1, 2),
                 "utc": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)}
                for i in range(1500)])
            sink = CsvSink(path="out/export.csv")
    '''))
    summary = project.adf("run", "--no-progress", "export.py:Export").stdout
    assert re.search(r"read\s+│\s+1,500", summary), summary
    assert re.search(r"throughput\s+│\s+\d{1,3}(,\d{3})* rows/s", summary), summary
    assert "msg/s" not in summary
    rows = (tmp_path / "out" / "export.csv").read_text().splitlines()
    assert rows[:2] == ["id,at,day,utc",
                        "0,2026-01-02T03:04:05,2026-01-02,2026-01-02T03:04:05+00:00"]


def test_the_web_process_logs_the_runs_it_starts_and_ends(
        tmp_path: Path, sqlite_url: str) -> None:
    from tests.acceptance.web.conftest import serve
    from tests.integration.web.conftest import memory_spec, wait_for

    server = serve(sqlite_url, tmp_path, "--heartbeat-every", "0.5")
    served = next(server)
    try:
        with served.client() as client:
            client.post("/api/flows", json=memory_spec("web_logged"))
            run = client.post("/api/flows/web_logged/trigger").json()
            wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["status"]
                     == "succeeded", what="the run to succeed")
        wait_for(lambda: "succeeded" in served.log.read_text(), what="the log line")
        with served.client() as client:  # throughput reads like the counts next to it
            for page in (f"/runs/{run['id']}", "/"):
                html = client.get(page).text
                assert re.search(r">\d{1,3}(,\d{3})* rows/s<", html), page
    finally:
        server.close()
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO \S+: "
    log = served.log.read_text()
    assert re.search(stamp + rf"run {run['id']} of web_logged started \(trigger manual", log,
                     re.M), log
    assert re.search(stamp + rf"run {run['id']} of web_logged succeeded: read 3, written 3",
                     log, re.M), log


def test_adf_toml_and_the_environment_choose_json_logs(local_project: Project) -> None:
    project = local_project
    config = project.root / "adf.toml"
    config.write_text(config.read_text() + 'log_format = "json"\n')
    project.adf("trigger", "seed_flow")
    beat = project.adf("-v", "heartbeat", code=1)  # half_way fails, as in every beat here
    ended = {e["flow"]: e["action"] for e in json_lines(beat.stderr) if "flow" in e
             and str(e.get("action", "")).startswith("run_") and e["action"] != "run_start"}
    assert ended == {"seed_flow": "run_succeeded", "orders": "run_succeeded",
                     "half_way": "run_failed"}
    # The command line wins over adf.toml.
    project.adf("trigger", "seed_flow")
    text = project.adf("-v", "--log-format", "text", "heartbeat").stderr
    assert re.search(r"Z INFO \S+: run \d+ of seed_flow succeeded", text), text
    bad = project.adf("--log-format", "yaml", "list", code=2)
    assert "'yaml' is not one of 'text', 'json'" in bad.stderr
