"""Security on by default: authentication, the heartbeat token, CSRF, escaping, masking,
generic 5xx bodies, and names that resolve only through the registry."""

from __future__ import annotations

import base64
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, routing
from fastapi.testclient import TestClient

from active_data_flow import DataFlow
from active_data_flow.catalog import catalog
from active_data_flow.errors import ConfigurationError
from active_data_flow.masking import MASK
from active_data_flow.message import Message
from active_data_flow.runtimes.heartbeat import FlowStore, register_flow
from active_data_flow.web import WebSettings, create_app
from active_data_flow.web.security import same_secret
from tests.integration.web.conftest import PASSWORD, TOKEN, USER, csrf_token, memory_spec, wait_for

# Values for path parameters when walking the routes.
SAMPLE_PARAMS = {"name": "some_flow", "flow": "some_flow", "run_id": "1", "filename": "adf.css"}


# -- authentication ----------------------------------------------------------------------
def test_create_app_refuses_to_build_without_an_auth_decision(store: FlowStore) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_app(store)
    assert info.value.option == "auth"


def test_every_route_but_health_refuses_a_caller_without_credentials(
    app: FastAPI, anonymous: TestClient,
) -> None:
    walked = []
    for route in routing.iter_route_contexts(app.routes):
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS[m.group(1)], route.path or "/")
        for method in (route.methods or set()) - {"HEAD"}:
            response = anonymous.request(method, path)
            walked.append((method, route.path, response.status_code))
    assert len(walked) > 25  # the walk really covered the engine
    public = {(m, p) for m, p, _ in walked if p == "/health"}
    assert public == {("GET", "/health")}
    refused = [(m, p, s) for m, p, s in walked if p != "/health" and s not in (401, 403)]
    assert refused == [], f"answered without credentials: {refused}"
    assert anonymous.get("/health").status_code == 200


def test_an_unauthenticated_page_is_a_401_with_a_basic_challenge(anonymous: TestClient) -> None:
    response = anonymous.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "text/html" in response.headers["content-type"]


@pytest.mark.parametrize("credentials", [(USER, "wrong"), ("root", PASSWORD), ("", "")])
def test_wrong_credentials_are_refused(anonymous: TestClient,
                                       credentials: tuple[str, str]) -> None:
    assert anonymous.get("/api/flows", auth=credentials).status_code == 401


def test_a_malformed_authorization_header_is_a_401(anonymous: TestClient) -> None:
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
        assert anonymous.get("/api/flows", headers={"Authorization": header}).status_code == 401


def test_secrets_are_compared_in_constant_time_whatever_their_length() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abcd")
    assert not same_secret(None, "abc")
    assert not same_secret("", "abc")


# -- heartbeat token ---------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Bearer "},
    {"Authorization": f"Basic {TOKEN}"}, {"X-ADF-Heartbeat-Token": TOKEN[:-1]},
])
def test_heartbeat_without_the_right_token_is_a_401(
    anonymous: TestClient, headers: dict[str, str],
) -> None:
    response = anonymous.post("/heartbeat", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_heartbeat_user_credentials_are_not_a_token(client: TestClient) -> None:
    assert client.post("/heartbeat").status_code == 401


def test_heartbeat_accepts_the_token_in_either_header(anonymous: TestClient) -> None:
    assert anonymous.post("/heartbeat",
                          headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert anonymous.post("/heartbeat",
                          headers={"X-ADF-Heartbeat-Token": TOKEN}).status_code == 200


def test_heartbeat_is_disabled_when_no_token_is_configured(store: FlowStore) -> None:
    from active_data_flow.web import basic_auth

    app = create_app(store, auth=basic_auth(USER, PASSWORD), settings=WebSettings())
    with TestClient(app) as c:
        response = c.post("/heartbeat", headers={"Authorization": "Bearer anything-at-all-1"})
    assert response.status_code == 401
    assert "no heartbeat token" in response.json()["error"]


def test_short_heartbeat_tokens_are_refused_at_configuration() -> None:
    with pytest.raises(ConfigurationError) as info:
        WebSettings(heartbeat_token="short")
    assert info.value.option == "heartbeat_token"


# -- CSRF ----------------------------------------------------------------------------------
def _create_form(name: str, token: str | None) -> dict[str, str]:
    form = {"name": name, "source_type": "memory", "source_config": "{}",
            "sink_type": "memory", "sink_config": "{}", "runtime_type": "heartbeat"}
    if token is not None:
        form["csrf_token"] = token
    return form


def test_a_form_post_without_its_csrf_token_is_a_403_and_changes_nothing(
    client: TestClient, store: FlowStore,
) -> None:
    csrf_token(client)  # the browser has its cookie, but the forged form lacks the token
    response = client.post("/flows", data=_create_form("forged", None),
                           follow_redirects=False)
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert store.list_flows().total == 0


def test_a_form_post_with_a_token_of_another_browser_is_a_403(
    client: TestClient, app: FastAPI, store: FlowStore,
) -> None:
    with TestClient(app) as other:
        other.auth = (USER, PASSWORD)
        foreign = csrf_token(other)
    csrf_token(client)
    response = client.post("/flows", data=_create_form("forged", foreign),
                           follow_redirects=False)
    assert response.status_code == 403
    assert store.list_flows().total == 0


def test_every_state_changing_form_requires_the_token(
    client: TestClient, store: FlowStore,
) -> None:
    store.create_flow(memory_spec("target"))
    csrf_token(client)
    for action in ("trigger", "pause", "resume", "cursor", "delete", "edit",
                   "dead-letters/replay"):
        response = client.post(f"/flows/target/{action}", data={}, follow_redirects=False)
        assert response.status_code == 403, action
    assert store.get_flow("target").status == "active"


def test_a_valid_form_post_creates_and_redirects(client: TestClient, store: FlowStore) -> None:
    token = csrf_token(client)
    response = client.post("/flows", data=_create_form("made_by_form", token),
                           follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].endswith("/flows/made_by_form?notice=created")
    assert store.get_flow("made_by_form").spec.sinks[0].type == "memory"


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"}, {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
])
def test_cross_site_posts_are_refused_even_with_a_valid_token(
    client: TestClient, store: FlowStore, headers: dict[str, str],
) -> None:
    token = csrf_token(client)
    response = client.post("/flows", data=_create_form("cross", token), headers=headers,
                           follow_redirects=False)
    assert response.status_code == 403
    api = client.post("/api/flows", json=memory_spec("cross_api"), headers=headers)
    assert api.status_code == 403
    assert store.list_flows().total == 0


def test_same_origin_posts_pass(client: TestClient, store: FlowStore) -> None:
    token = csrf_token(client)
    response = client.post("/flows", data=_create_form("same", token), follow_redirects=False,
                           headers={"Origin": "http://testserver",
                                    "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303
    assert store.get_flow("same").name == "same"


# -- escaping --------------------------------------------------------------------------------
SCRIPT = "<script>alert('x')</script>"


def test_a_flow_name_with_html_is_shown_escaped(client: TestClient, store: FlowStore) -> None:
    token = csrf_token(client)
    response = client.post("/flows", data=_create_form(SCRIPT, token))
    assert response.status_code == 422
    assert SCRIPT not in response.text
    assert "&lt;script&gt;" in response.text
    assert store.list_flows().total == 0


def test_html_in_configs_searches_and_errors_is_shown_escaped(
    client: TestClient, store: FlowStore,
) -> None:
    spec = memory_spec("html_inside")
    spec["sink"]["config"]["name"] = f"out{SCRIPT}"
    store.create_flow(spec)
    page = client.get("/flows/html_inside")
    assert page.status_code == 200
    assert SCRIPT not in page.text
    assert "&lt;script&gt;" in page.text
    dashboard = client.get("/", params={"search": SCRIPT})
    assert SCRIPT not in dashboard.text
    assert "&lt;script&gt;" in dashboard.text


@register_flow
class FailsWithHtml(DataFlow):
    source = {"type": "memory", "config": {"records": [{"n": 1}]}}
    sink = {"type": "memory", "config": {}}

    def transform(self, message: Message) -> Any:
        raise RuntimeError(f"bad record {SCRIPT}")


def test_a_run_error_with_html_is_shown_escaped(client: TestClient, store: FlowStore) -> None:
    catalog.register(FailsWithHtml)
    store.create_flow({**memory_spec("failing"), "transform": "fails_with_html"})
    run_id = store.trigger("failing").id
    client.post("/heartbeat", headers={"X-ADF-Heartbeat-Token": TOKEN})
    wait_for(lambda: store.get_run(run_id).status == "failed", what="the run to fail")
    page = client.get(f"/runs/{run_id}")
    assert "Traceback" in page.text
    assert SCRIPT not in page.text
    assert "bad record &lt;script&gt;" in page.text


# -- generic 5xx, request ids, masking -----------------------------------------------------
SECRET_PW = "pg-Secret-77"


@pytest.fixture
def store_with_password(make_database: Any) -> Any:
    """A PostgreSQL store whose URL carries a password (trust auth ignores it)."""
    url = make_database("postgresql").replace("postgres@", f"postgres:{SECRET_PW}@")
    store = FlowStore(url, auto_upgrade=True)
    yield store
    store.close()


def _broken_app(store: FlowStore, statement: str) -> FastAPI:
    from active_data_flow.web import basic_auth

    app = create_app(store, auth=basic_auth(USER, PASSWORD))
    store.create_flow(memory_spec("victim"))
    with store.engine.begin() as conn:  # damage the database under the app
        conn.execute(sa.text(statement))
    return app


def _assert_no_leak(*texts: str) -> None:
    for text in texts:
        for leak in ("adf_", "SELECT", "Traceback", "psycopg", SECRET_PW, "postgresql"):
            assert leak not in text, leak


def test_a_server_error_says_nothing_but_a_request_id(
    store_with_password: FlowStore, caplog: pytest.LogCaptureFixture,
) -> None:
    # A row the store cannot read (sinks must be a list): an unexpected error.
    broken = '{"name": "victim", "source": {"type": "memory"}, "sinks": 5}'
    app = _broken_app(store_with_password, f"UPDATE adf_flows SET spec = '{broken}'")
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR):
        api = c.get("/api/flows/victim", auth=(USER, PASSWORD),
                    headers={"X-Request-ID": "req-4242"})
        page = c.get("/flows/victim", auth=(USER, PASSWORD), headers={"Accept": "text/html"})
    assert api.status_code == 500
    assert api.json() == {"error": "internal server error", "request_id": "req-4242"}
    assert api.headers["x-request-id"] == "req-4242"
    assert page.status_code == 500
    assert page.headers["x-request-id"] in page.text
    _assert_no_leak(api.text, page.text)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "req-4242" in logged
    assert "Traceback" in logged  # the details are in the log...
    assert SECRET_PW not in logged  # ...with secrets masked


def test_a_store_failure_is_a_503_without_details(store_with_password: FlowStore) -> None:
    app = _broken_app(store_with_password, "DROP TABLE adf_dead_letters")
    with TestClient(app, raise_server_exceptions=False) as c:
        api = c.get("/api/flows/victim/dead-letters", auth=(USER, PASSWORD))
    assert api.status_code == 503
    assert api.json()["error"] == "the flow store's schema is out of date: run `adf db upgrade`"
    assert api.headers["retry-after"] == "5"
    _assert_no_leak(api.text)


def test_database_passwords_are_masked_in_pages(client: TestClient, store: FlowStore) -> None:
    spec = memory_spec("with_url")
    spec["sink"]["config"]["name"] = f"mysql+pymysql://app:{SECRET_PW}@db/app"
    store.create_flow(spec)
    for path in ("/flows/with_url", "/flows/with_url/edit", "/"):
        text = client.get(path).text
        assert SECRET_PW not in text, path
    assert f"mysql+pymysql://app:{MASK}@db/app" in client.get("/flows/with_url").text


# -- registry only -------------------------------------------------------------------------
def test_specs_cannot_import_code_by_naming_it(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "adf_evil_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Model: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    attempts = [
        {"type": "adf_evil_module:Model", "config": {}},
        {"type": "sqlalchemy", "config": {"model": "adf_evil_module:Model"}},
        {"type": "sqlalchemy", "config": {"model": "adf_evil_module.Model"}},
    ]
    for source in attempts:
        response = client.post("/api/flows", json={**memory_spec("evil"), "source": source})
        assert response.status_code == 422, response.text
    assert not marker.exists()
    assert "adf_evil_module" not in sys.modules
