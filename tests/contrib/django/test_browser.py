"""The admin and the mounted web engine in a real browser (headless system Chromium through
Playwright) against the test project served by uvicorn, on SQLite, PostgreSQL and MariaDB.

A staff user logs in to the admin, runs a flow with the "Run now" action, sees the run
succeed (after ``manage.py adf heartbeat`` executes it) and opens the engine under
``/flows/`` with the same session; a user who is not staff is refused by both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.acceptance.web.conftest import free_port
from tests.conftest import reachable
from tests.contrib.django.test_command import ROOT, add_customers, manage

ARTIFACTS = ROOT / "test-artifacts"

USERS = """
from django.contrib.auth.models import User
User.objects.create_user("boss", password="boss-pw-123", is_staff=True, is_superuser=True)
User.objects.create_user("clerk", password="clerk-pw-123")
"""


@dataclass
class Site:
    url: str
    db_url: str


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> Iterator[Site]:
    manage(db_url, "migrate", "--run-syncdb", "-v", "0")
    manage(db_url, "shell", "-c", USERS)
    add_customers(db_url, range(1, 31))
    manage(db_url, "adf", "sync")
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.contrib.django.settings",
           "ADF_DJANGO_DEFAULT_URL": db_url, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "uvicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.contrib.django.asgi:application",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not reachable(f"127.0.0.1:{port}", 0.2):
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the server did not start:\n" +
                                     (tmp_path / "uvicorn.log").read_text())
            time.sleep(0.2)
        yield Site(f"http://127.0.0.1:{port}", db_url)
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield instance
        instance.close()


def new_page(browser: Browser, site: Site) -> Page:
    page = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900}
                               ).new_page()
    page.set_default_timeout(15_000)
    return page


def log_in(page: Page, path: str, user: str, password: str) -> None:
    page.goto(path)
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.locator("input[type=submit]").click()


def test_staff_run_a_flow_from_the_admin_and_open_the_engine(
        browser: Browser, site: Site, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["db_url"]
    page = new_page(browser, site)
    log_in(page, "/admin/login/?next=/admin/active_data_flow/flow/", "boss", "boss-pw-123")
    row = page.locator("#result_list tr", has_text="copy_customers")
    expect(row).to_be_visible()
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "run_now")
    page.locator("button[name=index]").click()
    expect(page.get_by_text("Run queued: copy_customers")).to_be_visible()

    manage(site.db_url, "adf", "heartbeat")  # a worker's beat executes the queued run
    page.goto("/admin/active_data_flow/run/")
    expect(page.locator("#result_list tr", has_text="copy_customers")).to_contain_text(
        "succeeded")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"django-admin-runs-{kind}.png"), full_page=True)

    page.goto("/flows/")  # the engine, with the Django session: no second password
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()
    expect(page.get_by_role("link", name="copy_customers")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / f"django-engine-{kind}.png"), full_page=True)
    assert page.request.get("/flows/api/flows").status == 200


def test_users_who_are_not_staff_are_refused(browser: Browser, site: Site) -> None:
    anonymous = new_page(browser, site)
    anonymous.goto("/flows/")
    expect(anonymous).to_have_url(f"{site.url}/admin/login/?next=/flows/")
    assert anonymous.request.get("/flows/api/flows").status == 401

    clerk = new_page(browser, site)
    log_in(clerk, "/accounts/login/?next=/accounts/login/", "clerk", "clerk-pw-123")
    response = clerk.goto("/flows/")
    assert response is not None
    assert response.status == 403
    assert clerk.request.get("/flows/api/flows").status == 403
    clerk.goto("/admin/active_data_flow/flow/")
    expect(clerk).to_have_url(
        f"{site.url}/admin/login/?next=/admin/active_data_flow/flow/")
