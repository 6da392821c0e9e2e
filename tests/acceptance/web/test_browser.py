"""The pages in a real browser: headless system Chromium driven by Playwright (no browser
download: ``executable_path`` points at the Debian package) against ``adf serve``.

Scenario: create a flow through the form, trigger it, see the run succeed on the flow page,
open the run, pause the flow. It runs with JavaScript on and off: the pages must work
without it. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.acceptance.web.conftest import Served
from tests.integration.web.conftest import ARTIFACTS, PASSWORD, USER


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield instance
        instance.close()


@pytest.fixture(params=["js", "no-js"])
def page(request: pytest.FixtureRequest, browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(
        base_url=served.url, http_credentials={"username": USER, "password": PASSWORD},
        java_script_enabled=request.param == "js", viewport={"width": 1280, "height": 900})
    the_page = context.new_page()
    the_page.set_default_timeout(15_000)
    yield the_page
    context.close()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_create_trigger_watch_and_pause_a_flow(
    page: Page, served: Served, request: pytest.FixtureRequest,
) -> None:
    mode = request.node.callspec.params["page"]
    records = [{"id": i, "email": f"user{i}@example.com"} for i in range(25)]
    (served.workdir / "data").mkdir(exist_ok=True)  # the default root of untrusted file paths
    (served.workdir / "data" / "users.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))

    page.goto("/")
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()
    page.get_by_role("link", name="New flow").click()
    page.fill("#name", "export_users")
    page.select_option("#source_type", "jsonl")
    page.fill("#source_config", '{"path": "data/users.jsonl"}')
    page.select_option("#sink_type", "jsonl")
    page.fill("#sink_config", '{"path": "data/exported.jsonl"}')
    page.fill("#batch_size", "10")
    shot(page, f"{mode}-1-new-flow-form")
    page.get_by_role("button", name="Create flow").click()

    expect(page.locator(".notice")).to_have_text("Flow created.")
    expect(page.get_by_role("heading", name="export_users")).to_be_visible()
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".notice")).to_contain_text("Run requested")
    expect(page.locator("table.runs tbody tr").first).to_contain_text("pending")

    summary = served.beat()  # what cron does every minute
    assert len(summary["claimed"]) == 1
    run_id = summary["claimed"][0]
    for _ in range(100):  # the run goes on in the server's background; reload to watch it
        page.goto("/flows/export_users")
        if "succeeded" in page.locator("table.runs tbody tr").first.inner_text():
            break
        page.wait_for_timeout(200)
    row = page.locator("table.runs tbody tr").first
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("25")
    expect(page.locator("svg.chart rect.bar")).to_have_count(1)
    shot(page, f"{mode}-2-flow-after-run")
    assert (served.workdir / "data" / "exported.jsonl").read_text().count("\n") == 25

    page.get_by_role("link", name=f"#{run_id}").first.click()
    expect(page.get_by_role("heading", name=f"Run #{run_id}")).to_contain_text("succeeded")
    expect(page.locator("table.counts")).to_contain_text("25")
    shot(page, f"{mode}-3-run")

    page.get_by_role("link", name="export_users").first.click()
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".notice")).to_have_text(
        "Flow paused: it will not be scheduled until resumed.")
    expect(page.get_by_role("heading", name="export_users")).to_contain_text("paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    page.goto("/")
    expect(page.locator("table.flows tbody tr").first).to_contain_text("paused")
    shot(page, f"{mode}-4-dashboard")


def test_a_bad_option_in_the_form_is_shown_next_to_the_form(page: Page) -> None:
    page.goto("/flows/new")
    page.fill("#name", "broken")
    page.select_option("#source_type", "jsonl")
    page.fill("#source_config", '{"paht": "typo.jsonl"}')
    page.select_option("#sink_type", "memory")
    page.get_by_role("button", name="Create flow").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("paht")
    expect(page.locator("#source_config")).to_have_value('{"paht": "typo.jsonl"}')
    shot(page, "form-error")


# -- cross-site attempts (issue 12) ------------------------------------------------------
EVIL_PAGE = """<!doctype html><html><body>
<form id="form" method="post" action="{target}/api/flows/victim/pause" enctype="text/plain">
  <input name='{{"x": "' value='"}}'></form>
<script>
  fetch("{target}/api/flows/victim/trigger", {{method: "POST", mode: "no-cors",
        credentials: "include", headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}})
    .finally(() => {{ document.getElementById("form").submit(); }});
</script></body></html>"""
EVIL_FORM = """<!doctype html><html><body>
<form id="page" method="post" action="{target}/flows/victim/delete">
  <input name="csrf_token" value="forged"></form>
<script>document.getElementById("page").submit();</script></body></html>"""


@pytest.fixture
def evil_site(served: Served) -> Iterator[str]:
    """A page on another origin (localhost, another port) that posts to the engine."""
    import http.server
    import threading

    pages = {"/": EVIL_PAGE.format(target=served.url).encode(),
             "/delete": EVIL_FORM.format(target=served.url).encode()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(pages.get(self.path, b""))

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_logged_in_browser_on_another_site_cannot_change_anything(
    browser: Browser, served: Served, evil_site: str,
) -> None:
    with served.client() as api:
        assert api.post("/api/flows", json={
            "name": "victim", "source": {"type": "memory", "config": {"records": []}},
            "sink": {"type": "memory", "config": {}}}).status_code == 201
    # The browser holds the engine's credentials, as a logged-in user's would.
    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
    victim = context.new_page()
    victim.goto(f"{served.url}/flows/victim")  # logged in, CSRF cookie set
    for path in ("", "delete"):
        attack = context.new_page()
        attack.goto(evil_site + path)
        attack.wait_for_timeout(1500)  # the fetch and the form submissions have gone out
    context.close()
    with served.client() as api:
        flow = api.get("/api/flows/victim")
        assert flow.status_code == 200  # not deleted
        assert flow.json()["status"] == "active"  # not paused
        assert api.get("/api/flows/victim/runs").json()["total"] == 0  # not triggered
    refusals = served.log.read_text()
    assert "cross-site request refused" in refusals
