"""The admin: flows, runs and dead letters, and the actions, gated by permissions (SQLite,
through Django's test client; the browser test drives the same pages on every database)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from active_data_flow.catalog import FlowCatalog
from active_data_flow.contrib.django import conf
from active_data_flow.runtimes.heartbeat.engine.sync import sync
from tests.contrib.django.conftest import STORE_TABLES
from tests.contrib.django.testapp.data_flows import CopyCustomers

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/active_data_flow/flow/"


@pytest.fixture
def store() -> Iterator[Any]:
    with conf.flow_store() as the_store:
        sync(the_store, CopyCustomers, flows=FlowCatalog())
        yield the_store
        with the_store.engine.begin() as conn:
            for table in STORE_TABLES:
                conn.exec_driver_sql(f"DELETE FROM {table}")


def user(name: str, *, staff: bool = True, perms: tuple[str, ...] = ()) -> Client:
    account = User.objects.create_user(name, password="pw", is_staff=staff)
    for codename in perms:
        account.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(account)
    return client


def runs(store: Any) -> list[Any]:
    return list(store.runs.page(flow="copy_customers").items)


def act(client: Client, action: str, flow_id: int) -> Any:
    return client.post(CHANGELIST, {"action": action, "_selected_action": [flow_id]},
                       follow=True)


def test_a_superuser_runs_pauses_resumes_and_resets_a_flow(store: Any) -> None:
    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", password="pw"))
    flow = store.flows.get("copy_customers")
    page = admin.get(CHANGELIST)
    assert page.status_code == 200
    assert b"copy_customers" in page.content
    for action in (b"run_now", b"pause", b"resume", b"reset_cursor"):
        assert action in page.content

    assert b"Run queued: copy_customers" in act(admin, "run_now", flow.id).content
    assert [r.status for r in runs(store)] == ["pending"]
    detail = admin.get(f"{CHANGELIST}{flow.id}/change/")
    assert b"pending" in detail.content  # the run history inline

    assert b"Paused: copy_customers" in act(admin, "pause", flow.id).content
    assert store.flows.get("copy_customers").status == "paused"
    assert b"Resumed: copy_customers" in act(admin, "resume", flow.id).content
    assert store.flows.get("copy_customers").status == "active"
    assert b"Cursor reset: copy_customers" in act(admin, "reset_cursor", flow.id).content

    listing = admin.get("/admin/active_data_flow/run/?trigger=admin")
    assert b"copy_customers" in listing.content
    assert admin.get("/admin/active_data_flow/deadletter/?q=x").status_code == 200


def test_actions_need_their_permissions(store: Any) -> None:
    flow = store.flows.get("copy_customers")
    viewer = user("viewer", perms=("view_flow",))
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200
    assert b"run_now" not in page.content
    act(viewer, "run_now", flow.id)
    assert runs(store) == [] or all(
        r.trigger != "admin" for r in runs(store))

    runner = user("runner", perms=("view_flow", "run_flow"))
    page = runner.get(CHANGELIST)
    assert b"run_now" in page.content
    assert b"reset_cursor" not in page.content
    act(runner, "run_now", flow.id)
    assert [r.status for r in runs(store)] == ["pending"]

    outsider = user("outsider", staff=False)
    assert outsider.get(CHANGELIST).status_code == 302  # to the admin login
