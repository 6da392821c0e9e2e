"""``adf serve``: refuses to start without credentials, serves with them, can beat itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from active_data_flow.cli import main
from tests.acceptance.web.conftest import Served, serve
from tests.integration.web.conftest import PASSWORD, USER, memory_spec, wait_for


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("ADF_WEB_USER", "ADF_WEB_PASSWORD", "ADF_HEARTBEAT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_serve_refuses_to_start_without_credentials(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["serve", "--database-url", f"sqlite:///{tmp_path}/a.db"])
    assert result.exit_code == 2
    assert "ADF_WEB_USER and ADF_WEB_PASSWORD" in result.output
    assert "--insecure-no-auth" in result.output
    assert not (tmp_path / "a.db").exists()  # refused before touching anything


def test_serve_refuses_a_password_without_a_user(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADF_WEB_PASSWORD", "secret")
    assert runner.invoke(main, ["serve"]).exit_code == 2


def test_serve_refuses_credentials_and_the_opt_out_together(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADF_WEB_USER", USER)
    monkeypatch.setenv("ADF_WEB_PASSWORD", PASSWORD)
    result = runner.invoke(main, ["serve", "--insecure-no-auth"])
    assert result.exit_code == 2
    assert "drop one or the other" in result.output


def test_serve_refuses_an_unmigrated_store_with_no_upgrade(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("ADF_WEB_USER", USER)
    monkeypatch.setenv("ADF_WEB_PASSWORD", PASSWORD)
    result = runner.invoke(main, ["serve", "--no-upgrade", "--database-url",
                                  f"sqlite:///{tmp_path}/fresh.db"])
    assert result.exit_code == 2  # a mistake to fix (docs/heartbeat.md, exit codes)
    assert "adf db upgrade" in result.output


def test_served_engine_requires_the_credentials(served: Served) -> None:
    with served.client(auth=False) as anonymous:
        assert anonymous.get("/").status_code == 401
        assert anonymous.get("/health").status_code == 200
    with served.client() as client:
        assert client.get("/").status_code == 200
        assert client.get("/api/flows").json()["total"] == 0


def test_insecure_no_auth_serves_everyone_and_says_so(
    tmp_path: Path, make_database: Callable[[str], str],
) -> None:
    server = serve(make_database("sqlite"), tmp_path, "--insecure-no-auth",
                   env={"ADF_WEB_USER": "", "ADF_WEB_PASSWORD": ""})
    served = next(server)
    try:
        assert httpx.get(f"{served.url}/api/flows").status_code == 200
        assert "WITHOUT authentication" in served.log.read_text()
    finally:
        server.close()


def test_heartbeat_every_runs_due_flows_without_cron(
    tmp_path: Path, make_database: Callable[[str], str],
) -> None:
    server = serve(make_database("sqlite"), tmp_path, "--heartbeat-every", "0.5")
    served = next(server)
    try:
        with served.client() as client:
            client.post("/api/flows", json=memory_spec("self_beating"))
            run = client.post("/api/flows/self_beating/trigger").json()
            done = wait_for(lambda: (r := client.get(f"/api/runs/{run['id']}").json())
                            ["status"] == "succeeded" and r, what="the run to succeed")
        assert done["written"] == 3
    finally:
        server.close()
