"""The engine inside host applications: mounted in FastAPI, and wrapped for a WSGI host
(Flask) with a2wsgi, as docs/web.md shows."""

from __future__ import annotations

import base64
import re

from a2wsgi import ASGIMiddleware
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from active_data_flow.runtimes.heartbeat import FlowStore
from tests.integration.web.conftest import PASSWORD, TOKEN, USER, make_app, memory_spec, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found
    return found.group(1)


def test_mounted_in_a_fastapi_host(store: FlowStore) -> None:
    host = FastAPI()

    @host.get("/")
    def home() -> dict[str, str]:
        return {"host": "home"}

    host.mount("/active_data_flow", make_app(store))
    with TestClient(host) as c:
        assert c.get("/").json() == {"host": "home"}
        dashboard = c.get("/active_data_flow/", headers=BASIC)
        assert dashboard.status_code == 200
        # Links and assets point inside the mount.
        assert 'href="http://testserver/active_data_flow/flows/new"' in dashboard.text
        assert c.get("/active_data_flow/static/adf.css", headers=BASIC).status_code == 200
        assert c.get("/active_data_flow/api/flows").status_code == 401
        # A form post with its CSRF cookie, scoped to the mount.
        token = _token(dashboard.text if "csrf_token" in dashboard.text
                       else c.get("/active_data_flow/flows/new", headers=BASIC).text)
        created = c.post("/active_data_flow/flows", headers=BASIC, follow_redirects=False,
                         data={"csrf_token": token, "name": "hosted", "source_type": "memory",
                               "sink_type": "memory", "runtime_type": "heartbeat"})
        assert created.status_code == 303, created.text
        assert created.headers["location"] == (
            "http://testserver/active_data_flow/flows/hosted?notice=created")
        run = c.post("/active_data_flow/api/flows/hosted/trigger", headers=BASIC).json()
        beat = c.post("/active_data_flow/heartbeat",
                      headers={"Authorization": f"Bearer {TOKEN}"})
        assert beat.json()["claimed"] == [run["id"]]
        wait_for(lambda: store.get_run(run["id"]).status == "succeeded", what="the run")


def test_wrapped_for_a_flask_host_with_a2wsgi(store: FlowStore) -> None:
    flask_app = Flask("host")

    @flask_app.get("/")
    def home() -> str:
        return "host home"

    engine = make_app(store)
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/active_data_flow": ASGIMiddleware(engine)},  # type: ignore[dict-item, arg-type]
    )
    c = flask_app.test_client()
    assert c.get("/").text == "host home"
    assert c.get("/active_data_flow/api/flows").status_code == 401
    store.create_flow(memory_spec("from_flask"))
    listed = c.get("/active_data_flow/api/flows", headers=BASIC)
    assert listed.json is not None
    assert [f["name"] for f in listed.json["items"]] == ["from_flask"]
    page = c.get("/active_data_flow/flows/from_flask", headers=BASIC)
    assert page.status_code == 200
    assert 'action="http://localhost/active_data_flow/flows/from_flask/pause"' in page.text
    paused = c.post("/active_data_flow/flows/from_flask/pause", headers=BASIC,
                    data={"csrf_token": _token(page.text)})
    assert paused.status_code == 303
    assert store.get_flow("from_flask").status == "paused"
    forged = c.post("/active_data_flow/flows/from_flask/resume", headers=BASIC, data={})
    assert forged.status_code == 403
    assert store.get_flow("from_flask").status == "paused"
