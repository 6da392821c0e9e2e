"""Issue 11, items 2-5: the usual mistakes of a first hour, each one line and an exit code.

A temporary application (package ``myapp``, flows in the ``data_flows`` folder ``adf init``
made, PostgreSQL) driven by ``adf`` subprocesses:

* configuration mistakes (a misspelt option, a wrong model import string, a bad cron
  string, an unknown time zone) under ``adf run``, ``adf sync``, ``adf worker`` and
  ``adf heartbeat``: one line naming the flow, the option and the cause, exit code 2;
* ``adf sync`` prints every flow it could not load and exits 2; an out-of-range cron is
  refused where the flow is defined;
* the flows import the application's own package under every command (and a uvicorn
  host), from any folder of the project; ``pythonpath`` in adf.toml adds folders;
* the flow store's database down or wrong: a visible retry for a bounded time, or one line
  at once for what no retry cures; a worker outlives the database going away and back.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.first_hour.conftest import Project, Proxy, _free_port, error_lines

COPY_ORDERS = '''
    from active_data_flow import DataFlow
    from active_data_flow.connectors.sqlalchemy import SqlAlchemySink, SqlAlchemySource
    from active_data_flow.runtimes.heartbeat import Heartbeat
    from myapp.models import Order, OrderCopy

    DATABASE = {url!r}


    class CopyOrders(DataFlow):
        source = SqlAlchemySource(model=Order, {source_options}database=DATABASE)
        sink = SqlAlchemySink(model=OrderCopy, upsert=True, database=DATABASE)
        runtime = Heartbeat({runtime})
'''


def copy_orders(project: Project, *, source_options: str = 'cursor_column=["updated_at", "id"], ',
                runtime: str = "interval=60", module: str = "copy_orders") -> Path:
    return project.flow(module, COPY_ORDERS.format(url=project.database_url,
                                                   source_options=source_options,
                                                   runtime=runtime))


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """The command exited with ``code`` after one ``Error:`` line holding each of ``parts``,
    and no traceback; returns the line."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    lines = error_lines(result.stderr)
    assert len(lines) == 1, output
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def add_orders(project: Project, *ids: int) -> None:
    for n in ids:
        project.sql("INSERT INTO orders VALUES (:id, :at, :amount)", id=n,
                    at=f"2026-01-01 00:00:{n:02d}", amount=10 * n)


# -- item 2: configuration mistakes -----------------------------------------------------
COMMANDS = (("run", "data_flows/copy_orders.py:CopyOrders"), ("sync",), ("worker",),
            ("heartbeat",))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_misspelt_option_is_one_line_naming_the_flow_and_the_option_meant(
    project: Project, command: tuple[str, ...],
) -> None:
    path = copy_orders(project, source_options='cursor_colum=["updated_at", "id"], ')
    source_line = path.read_text().splitlines().index(next(
        x for x in path.read_text().splitlines() if "source =" in x)) + 1

    assert_one_line(project.adf(*command), 2, f"copy_orders.py: line {source_line}, flow "
                    "CopyOrders: sqlalchemy source: unknown option 'cursor_colum' (did you "
                    "mean 'cursor_column'?)")


def test_a_wrong_model_import_string_names_the_model_meant(project: Project) -> None:
    copy_orders(project, source_options='model="myapp.models:Ordr", ')
    (project.flows / "copy_orders.py").write_text(
        (project.flows / "copy_orders.py").read_text().replace("model=Order, ", ""))

    for command in (("run", "data_flows/copy_orders.py:CopyOrders"), ("sync",)):
        assert_one_line(project.adf(*command), 2, "flow CopyOrders", "option 'model'",
                        "'Ordr'", "did you mean 'Order'?")


@pytest.mark.parametrize(("runtime", "parts"), [
    ('interval="every 5 minutes"', ("option 'interval'", "'every 5 minutes'")),
    ('interval="0 25 * * *"', ("option 'interval'", "the hour field '25' is out of range")),
    ('interval="0 2 * * *", timezone="Europe/Pariss"',
     ("option 'timezone'", "did you mean 'Europe/Paris'?")),
], ids=["not-cron", "out-of-range", "time-zone"])
def test_a_bad_schedule_is_refused_where_the_flow_is_defined(
    project: Project, runtime: str, parts: tuple[str, ...],
) -> None:
    copy_orders(project, runtime=runtime)

    for command in COMMANDS:
        assert_one_line(project.adf(*command), 2, "flow CopyOrders", "heartbeat runtime",
                        *parts)


def test_an_unknown_setting_in_adf_toml_names_the_setting_meant(project: Project) -> None:
    config = project.root / "adf.toml"
    config.write_text(config.read_text() + "\nlease_second = 5\n")

    assert_one_line(project.adf("list"), 2, "unknown setting 'lease_second'",
                    "did you mean 'lease_seconds'?")


# -- item 3: adf sync reports every flow it cannot load ----------------------------------
def test_sync_prints_every_flow_it_cannot_load_and_exits_2(project: Project) -> None:
    copy_orders(project, runtime='interval="0 25 * * *"')
    project.flow("broken", "class Oops(:\n")
    project.flow("needs_missing", "import myapp.no_such_module\n")

    result = project.adf("sync")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 3, result.stderr
    assert any("copy_orders.py" in x and "hour field '25'" in x for x in lines)
    assert any("broken.py" in x and "SyntaxError" in x for x in lines)
    assert any("needs_missing.py" in x and "No module named 'myapp.no_such_module'" in x
               for x in lines)
    assert "hello_flow" in result.stdout  # the flows that load are still synced
    assert "nothing" not in result.stdout


# -- item 4: the application's own package ------------------------------------------------
def test_flows_import_the_application_package_under_every_command(project: Project) -> None:
    copy_orders(project)
    add_orders(project, 1, 2, 3)

    synced = project.adf("sync")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "copy_orders" in synced.stdout

    ran = project.adf("run", "--json", "data_flows/copy_orders.py:CopyOrders")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert '"written": 3' in ran.stdout

    add_orders(project, 4)
    beat = project.adf("heartbeat")  # the stored flow, run by a heartbeat
    assert beat.returncode == 0, beat.stdout + beat.stderr
    assert "succeeded 2" in beat.stdout  # hello_flow and copy_orders

    # From a folder below the project's, adf.toml is found and the project is importable.
    below = project.adf("run", "--json", "copy_orders.py:CopyOrders", cwd=project.flows)
    assert below.returncode == 0, below.stdout + below.stderr
    assert project.sql("SELECT count(*) FROM order_copies")[0][0] == 4
    assert "ModuleNotFoundError" not in synced.stderr + ran.stderr + beat.stdout


def test_a_worker_runs_a_flow_that_imports_the_application_package(project: Project) -> None:
    copy_orders(project, runtime="interval=0.2")
    add_orders(project, 1)
    assert project.adf("sync").returncode == 0
    worker = project.start("worker", "--interval", "0.2")
    try:
        wait_for(lambda: project.sql("SELECT count(*) FROM order_copies")[0][0] == 1,
                 "the worker never ran copy_orders")
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert "ModuleNotFoundError" not in output


def test_a_celery_worker_started_by_adf_loads_flows_that_import_the_application_package(
    project: Project, redis_url: str,
) -> None:
    copy_orders(project)
    worker = project.start("celery-worker", "--broker", redis_url, "--flows", "data_flows",
                           "-P", "solo", ADF_DATABASE_URL=project.database_url)
    lines: list[str] = []
    reader = _reader(worker, lines)
    try:
        wait_for(lambda: any("ready." in x for x in lines) or worker.poll() is not None,
                 "the Celery worker never became ready", lines)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        reader.join(timeout=10)
        assert worker.stdout is not None
        worker.stdout.close()
    output = "\n".join(lines)
    assert any("ready." in x for x in lines), output
    assert "cannot load flows" not in output
    assert "ModuleNotFoundError" not in output


def test_pythonpath_in_adf_toml_makes_more_folders_importable(project: Project) -> None:
    (project.root / "src" / "shopcore").mkdir(parents=True)
    (project.root / "src" / "shopcore" / "__init__.py").write_text("GREETING = 'hi'\n")
    project.flow("greet", '''
        from active_data_flow import DataFlow
        from active_data_flow.connectors.memory import MemorySink, MemorySource
        from shopcore import GREETING

        class Greet(DataFlow):
            source = MemorySource(records=[{"text": GREETING}])
            sink = MemorySink(name="greetings")
    ''')
    assert_one_line(project.adf("sync"), 2, "greet.py", "No module named 'shopcore'",
                    "pythonpath")

    config = project.root / "adf.toml"
    config.write_text(config.read_text() + '\npythonpath = ["src"]\n')
    synced = project.adf("sync")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "greet" in synced.stdout


def test_a_module_error_is_printed_once(project: Project) -> None:
    project.flow("needs_missing", "import myapp.no_such_module\n")

    for command in (("sync",), ("worker",), ("run", "data_flows/needs_missing.py:Nope")):
        result = project.adf(*command)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert output.count("No module named 'myapp.no_such_module'") == 1, output


def test_a_uvicorn_host_loads_flows_that_import_the_application_package(
    project: Project,
) -> None:
    """A host module outside the project folder's import path (``--app-dir deploy``) whose
    engine loads ADF_FLOWS: adf.toml, found from the working directory, makes the project
    importable."""
    copy_orders(project)
    (project.root / "deploy").mkdir()
    (project.root / "deploy" / "host.py").write_text(
        "from active_data_flow.runtimes.heartbeat import FlowStore, sync\n"
        "from active_data_flow.web import create_app\n"
        "store = FlowStore()\n"
        "report = sync(store)\n"
        "assert report.ok, report.errors\n"
        "app = create_app(store, insecure_no_auth=True)\n")
    port = _free_port()
    host = subprocess.Popen(
        [str(Path(sys.executable).with_name("uvicorn")), "host:app", "--app-dir", "deploy",
         "--port", str(port)], cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=project.environment(ADF_DATABASE_URL=project.database_url,
                                           ADF_FLOWS=str(project.flows)))
    try:
        def answers() -> bool:
            assert host.poll() is None, host.communicate()[0]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_for(answers, "the host never answered")
        flows = httpx.get(f"http://127.0.0.1:{port}/api/flows", timeout=10).json()
        assert "copy_orders" in str(flows)
    finally:
        host.terminate()
        host.communicate(timeout=30)


# -- item 5: the flow store's database down or wrong ----------------------------------------
STORE_COMMANDS = (("list",), ("heartbeat",), ("sync",), ("runs", "hello_flow"),
                  ("db", "upgrade"), ("db", "current"), ("worker",),
                  ("serve", "--insecure-no-auth", "--port", "0"))


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_an_unreachable_store_is_retried_visibly_then_one_line_exit_1(
    project: Project, unused_port: int, command: tuple[str, ...],
) -> None:
    url = f"postgresql+psycopg://app:s3cret@127.0.0.1:{unused_port}/shop"

    result = project.adf(*command, ADF_DATABASE_URL=url, ADF_STORE_CONNECT_TIMEOUT="1.5",
                         timeout=60)

    line = assert_one_line(result, 1, "unreachable for 1.5s", "127.0.0.1",
                           "Connection refused")
    assert "s3cret" not in result.stdout + result.stderr
    assert "app:***@" in line
    retries = [x for x in result.stderr.splitlines() if "retrying in" in x]
    assert retries, result.stderr
    assert all("unreachable" in x and "s3cret" not in x for x in retries)


def test_the_wait_for_the_store_is_set_in_adf_toml(project: Project, unused_port: int) -> None:
    config = project.root / "adf.toml"
    text = re.sub(r'database_url = ".*"', f'database_url = "postgresql+psycopg://app@127.0.0.1:'
                  f'{unused_port}/shop"', config.read_text())
    config.write_text(text + "\nstore_connect_timeout = 0.5\n")

    assert_one_line(project.adf("list"), 1, "unreachable for 0.5s")


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_store_database_that_does_not_exist_is_one_line_at_once(
    project: Project, kind: str,
) -> None:
    url = ("postgresql+psycopg://postgres@127.0.0.1:5432/adf_no_such_db" if kind == "postgresql"
           else "mysql+pymysql://root@127.0.0.1:3306/adf_no_such_db")
    for command in (("list",), ("db", "upgrade"), ("db", "current"), ("worker",)):
        result = project.adf(*command, ADF_DATABASE_URL=url)
        assert_one_line(result, 2, "adf_no_such_db", "ADF_DATABASE_URL")
        assert "retrying" not in result.stderr  # not retried: no retry cures it


def test_refused_credentials_and_a_postgres_url_are_one_line_at_once(project: Project) -> None:
    refused = project.adf("list", ADF_DATABASE_URL=(
        "postgresql+psycopg://adf_no_such_user:pw0rd@127.0.0.1:5432/postgres"))
    line = assert_one_line(refused, 2, "adf_no_such_user", "does not exist")
    assert "pw0rd" not in refused.stdout + refused.stderr
    assert "***" in line
    assert "retrying" not in refused.stderr

    heroku = project.adf("db", "current", ADF_DATABASE_URL="postgres://u:pw0rd@db/app")
    line = assert_one_line(heroku, 2, "write postgresql://")
    assert "pw0rd" not in line


def test_a_worker_outlives_the_store_going_away_and_coming_back(
    project: Project, proxy: Proxy,
) -> None:
    """The store's database behind a proxy the test cuts and restores: the worker logs one
    line per failed beat, keeps running, and runs flows again once the database is back."""
    copy_orders(project, runtime="interval=0.3")
    add_orders(project, 1)
    assert project.adf("sync").returncode == 0
    via_proxy = project.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert via_proxy != project.database_url
    worker = project.start("worker", "--interval", "0.3", "--quiet",
                           ADF_DATABASE_URL=via_proxy, ADF_STORE_CONNECT_TIMEOUT="1")
    lines: list[str] = []
    reader = _reader(worker, lines)
    try:
        wait_for(lambda: project.sql("SELECT count(*) FROM order_copies")[0][0] == 1,
                 "the worker never ran copy_orders", lines)
        proxy.cut()
        wait_for(lambda: sum("heartbeat failed" in x for x in lines) >= 3,
                 "the worker did not report failed beats", lines)
        assert worker.poll() is None, "\n".join(lines)
        proxy.restore()
        add_orders(project, 2)
        wait_for(lambda: project.sql("SELECT count(*) FROM order_copies")[0][0] == 2,
                 "the worker did not recover", lines)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        reader.join(timeout=10)
        assert worker.stdout is not None
        worker.stdout.close()
    output = "\n".join(lines)
    assert worker.returncode == 0, output
    assert "Traceback" not in output
    failed = [x for x in lines if "heartbeat failed" in x]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", x) for x in failed), failed
    assert all("s3cret" not in x for x in lines)


# -- helpers ------------------------------------------------------------------------------
def wait_for(condition: object, what: str, lines: list[str] | None = None,
             timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(what + ("\n" + "\n".join(lines) if lines else ""))
        time.sleep(0.1)


def _reader(process: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread
