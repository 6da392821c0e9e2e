"""The first hour, last step: the web engine inside the application's own web host.

The application (``myapp``, on PostgreSQL, set up by ``adf init``) mounts the engine in a
FastAPI host served by uvicorn, and wraps it for a Flask host (a2wsgi) served by werkzeug,
each started as its own process from the project folder, as a user deploys it. Through each
host: the host's own page answers, the engine refuses an anonymous caller, lists the flow
(whose module imports the application's package), runs it on a trigger and a heartbeat, and
the rows arrive.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.acceptance.first_hour.conftest import Project, _free_port
from tests.acceptance.first_hour.test_mistakes import add_orders, copy_orders

USER, PASSWORD, TOKEN = "admin", "a-long-enough-password", "a-heartbeat-token-of-32-chars-xx"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}

ENGINE = f'''
    from active_data_flow.runtimes.heartbeat import FlowStore, sync
    from active_data_flow.web import basic_auth, create_app

    store = FlowStore()                      # ADF_DATABASE_URL, from adf.toml's database
    report = sync(store)                     # the code-defined flows of data_flows/
    assert report.ok, report.errors
    engine = create_app(store, auth=basic_auth({USER!r}, {PASSWORD!r}),
                        heartbeat_token={TOKEN!r})
'''

FASTAPI_HOST = ENGINE + '''

    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/")
    def home() -> dict[str, str]:
        return {"host": "fastapi"}


    app.mount("/flows", engine)
'''

FLASK_HOST = ENGINE + '''

    from a2wsgi import ASGIMiddleware
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import run_simple

    app = Flask("shop")


    @app.get("/")
    def home() -> str:
        return "flask host"


    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/flows": ASGIMiddleware(engine)})

    if __name__ == "__main__":
        import sys

        run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
'''


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


HOSTS: dict[str, tuple[str, Callable[[int], list[str]], object]] = {
    "fastapi": (FASTAPI_HOST,
                lambda port: [_bin("uvicorn"), "myapp.web:app", "--port", str(port)],
                {"host": "fastapi"}),
    "flask": (FLASK_HOST,
              lambda port: [sys.executable, "-m", "myapp.web", str(port)],
              "flask host"),
}


@contextmanager
def serving(project: Project, argv: list[str], port: int) -> Iterator[str]:
    """Start the host from the project folder (the application's package importable there);
    its base URL once it answers."""
    process = subprocess.Popen(
        argv, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=project.environment(ADF_DATABASE_URL=project.database_url,
                                ADF_FLOWS=str(project.flows)))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail("the host exited:\n" + process.communicate()[0])
            try:
                httpx.get(base + "/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail("the host never answered")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_the_engine_runs_flows_from_inside_the_applications_web_host(
    project: Project, kind: str
) -> None:
    source, argv, home = HOSTS[kind]
    (project.root / "myapp" / "web.py").write_text(textwrap.dedent(source))
    copy_orders(project)
    add_orders(project, 1, 2, 3)
    port = _free_port()

    with serving(project, argv(port), port) as base:
        page = httpx.get(base + "/", timeout=10)
        assert (page.json() if kind == "fastapi" else page.text) == home
        assert httpx.get(base + "/flows/api/flows", timeout=10).status_code == 401
        listed = httpx.get(base + "/flows/api/flows", headers=BASIC, timeout=10).json()
        assert {f["name"] for f in listed["items"]} == {"copy_orders", "hello_flow"}
        dashboard = httpx.get(base + "/flows/", headers=BASIC, timeout=10)
        assert dashboard.status_code == 200
        assert "copy_orders" in dashboard.text

        run = httpx.post(base + "/flows/api/flows/copy_orders/trigger", headers=BASIC,
                         timeout=10).json()
        beat = httpx.post(base + "/flows/heartbeat", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert beat.status_code == 200, beat.text
        assert run["id"] in beat.json()["claimed"]
        deadline = time.monotonic() + 60
        while True:
            status = httpx.get(f"{base}/flows/api/runs/{run['id']}", headers=BASIC,
                               timeout=10).json()
            if status["status"] not in ("pending", "running") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["status"] == "succeeded", status
        assert (status["read"], status["written"]) == (3, 3)
    assert project.sql("SELECT id, amount FROM order_copies ORDER BY id") == [
        (1, 10), (2, 20), (3, 30)]
