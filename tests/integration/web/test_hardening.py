"""Issue 12, in process: the pieces the served tests (tests/acceptance/web/
test_hostile_input.py) cannot reach or time: CSRF tokens that expire and are bound to the
user, authentication that never sees a body, the login throttle's clock, password length,
and the settings that configure them."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat import FlowStore
from active_data_flow.web import WebSettings, basic_auth, create_app
from active_data_flow.web.guards import LoginThrottle
from active_data_flow.web.security import MIN_PASSWORD_LENGTH, host_allowed, origin_key
from tests.integration.web.conftest import PASSWORD, USER


def users_hook(request: Request) -> str:
    """Two users, told apart by a header (a host application's session would do this)."""
    user = request.headers.get("x-user")
    if user not in ("alice", "bob"):
        raise HTTPException(401, "who are you?")
    return user


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found
    return found.group(1)


def _form(name: str, token: str) -> dict[str, str]:
    return {"csrf_token": token, "name": name, "source_type": "jsonl",
            "source_config": '{"path": "data/in.jsonl"}', "sink_type": "jsonl",
            "sink_config": '{"path": "data/out.jsonl"}', "runtime_type": "heartbeat"}


def test_csrf_tokens_are_bound_to_the_user(store: FlowStore) -> None:
    app = create_app(store, auth=users_hook)
    with TestClient(app) as c:
        token = _token(c.get("/flows/new", headers={"x-user": "alice"}).text)
        stolen = c.post("/flows", data=_form("as_bob", token), headers={"x-user": "bob"},
                        follow_redirects=False)
        assert stolen.status_code == 403
        own = c.post("/flows", data=_form("as_alice", token), headers={"x-user": "alice"},
                     follow_redirects=False)
        assert own.status_code == 303
    assert [f.name for f in store.list_flows().items] == ["as_alice"]


def test_csrf_tokens_expire(store: FlowStore, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(store, auth=basic_auth(USER, PASSWORD),
                     settings=WebSettings(csrf_max_age_s=3600))
    with TestClient(app) as c:
        c.auth = (USER, PASSWORD)
        token = _token(c.get("/flows/new").text)
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now + 3601)
        late = c.post("/flows", data=_form("late", token), follow_redirects=False)
        assert late.status_code == 403
        assert "expired" in late.text
        monkeypatch.setattr(time, "time", lambda: now + 3599)
        assert c.post("/flows", data=_form("in_time", token),
                      follow_redirects=False).status_code == 303


@pytest.mark.parametrize("token", ["é", "\u00e9" * 74, "ü" + "0" * 73, "", "0" * 74])
def test_malformed_csrf_tokens_are_a_403(client: TestClient, token: str) -> None:
    client.get("/flows/new")
    response = client.post("/flows", data=_form("bad_token", token), follow_redirects=False)
    assert response.status_code == 403


def test_the_auth_hook_runs_before_and_without_the_body(store: FlowStore) -> None:
    seen: list[Any] = []

    async def greedy_hook(request: Request) -> str:
        try:
            seen.append(await request.body())
        except Exception as exc:  # the gate's request has no body to give
            seen.append(type(exc).__name__)
        raise HTTPException(401, "no")

    app = create_app(store, auth=greedy_hook)
    with TestClient(app) as c:
        response = c.post("/api/flows", content="{malformed", headers={
            "Content-Type": "application/json"})
    assert response.status_code == 401
    assert seen
    assert seen[0] != b"{malformed"


def test_the_login_throttle_forgets_failures_after_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    throttle = LoginThrottle(failures=3, window_s=60)
    for _ in range(3):
        assert throttle.retry_after("c") == 0
        throttle.failed("c")
    assert throttle.retry_after("c") == 60
    assert throttle.retry_after("other") == 0
    clock[0] += 59.5
    assert throttle.retry_after("c") == 1
    clock[0] += 1
    assert throttle.retry_after("c") == 0


def test_throttled_clients_get_429_with_retry_after(store: FlowStore) -> None:
    app = create_app(store, auth=basic_auth(USER, PASSWORD),
                     settings=WebSettings(login_failures=3))
    with TestClient(app) as c:
        statuses = [c.get("/api/flows", auth=(USER, "wrong password!")).status_code
                    for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        right = c.get("/api/flows", auth=(USER, PASSWORD))
        assert right.status_code == 429
        assert int(right.headers["retry-after"]) > 0
        # While locked out, every call of the client waits, with credentials or without.
        assert c.get("/api/flows").status_code == 429


def test_basic_auth_refuses_short_passwords() -> None:
    with pytest.raises(ValueError, match=str(MIN_PASSWORD_LENGTH)):
        basic_auth("admin", "x" * (MIN_PASSWORD_LENGTH - 1))
    basic_auth("admin", "x" * MIN_PASSWORD_LENGTH)


def test_adf_serve_refuses_a_short_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from active_data_flow.cli import main

    monkeypatch.setenv("ADF_WEB_USER", "admin")
    monkeypatch.setenv("ADF_WEB_PASSWORD", "short")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2
    assert "at least 12 characters" in result.output


def test_settings_from_the_environment() -> None:
    settings = WebSettings.from_env({"ADF_WEB_ALLOWED_HOSTS": "adf.example.com, *.corp",
                                     "ADF_WEB_MAX_BODY": "2048",
                                     "ADF_WEB_LOGIN_FAILURES": "5"})
    assert settings.allowed_hosts == ("adf.example.com", "*.corp")
    assert settings.max_body_bytes == 2048
    assert settings.login_failures == 5
    with pytest.raises(ConfigurationError) as info:
        WebSettings.from_env({"ADF_WEB_MAX_BODY": "lots"})
    assert info.value.option == "max_body_bytes"
    with pytest.raises(ConfigurationError):
        WebSettings(max_body_bytes=10)


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin_key("http://Example.com") == ("http", "example.com", 80)
    assert origin_key("https://example.com:443/") == ("https", "example.com", 443)
    assert origin_key("https://example.com") != origin_key("http://example.com")
    assert origin_key("ftp://example.com") is None
    assert origin_key("null") is None
    assert origin_key("http://example.com:99999") is None
    assert host_allowed("a.corp", ("*.corp",))
    assert not host_allowed("corp.evil", ("*.corp",))
    assert not host_allowed("rebind.attacker.example", ("127.0.0.1", "localhost"))


def test_the_allowed_hosts_refuse_other_host_headers(store: FlowStore) -> None:
    app = create_app(store, auth=basic_auth(USER, PASSWORD),
                     settings=WebSettings(allowed_hosts=("testserver",)))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"Host": "evil.example"}).status_code == 400


def test_untrusted_specs_get_only_connectors_marked_safe(
    client: TestClient, strict_untrusted: None,
) -> None:
    memory = {"name": "mem", "source": {"type": "memory", "config": {"records": []}},
              "sink": {"type": "jsonl", "config": {"path": "data/out.jsonl"}}}
    refused = client.post("/api/flows", json=memory)
    assert refused.status_code == 422
    assert refused.json()["option"] == "type"
    assert "not marked safe" in refused.json()["error"]
    safe = {**memory, "source": {"type": "jsonl", "config": {"path": "data/in.jsonl"}}}
    assert client.post("/api/flows", json=safe).status_code == 201
