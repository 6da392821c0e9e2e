"""examples/django_shop end to end, as its README runs it: ``shop_demo``, then
``shop_serve`` (the site and a worker); the scheduled flows fill the report table and the
CSV, the admin and the engine answer, and an edited order flows through incrementally."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.acceptance.web.conftest import free_port
from tests.conftest import reachable
from tests.contrib.django.test_command import ROOT

EXAMPLE = ROOT / "examples" / "django_shop"


def shop(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ADF_DATABASE_URL", "ADF_FLOWS", "DJANGO_"))}
    env.update(SHOP_DATABASE=str(tmp_path / "shop.sqlite3"),
               SHOP_EXPORTS=str(tmp_path / "exports"), PYTHONPATH=str(ROOT / "src"))
    return env


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"manage.py {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def query(env: dict[str, str], sql: str) -> list[Any]:
    engine = sa.create_engine(f"sqlite:///{env['SHOP_DATABASE']}", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql(sql))
    finally:
        engine.dispose()


def test_the_shop_runs_as_its_readme_says(tmp_path: Path) -> None:
    env = shop(tmp_path)
    assert "ready" in manage(env, "shop_demo")
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "manage.py", "shop_serve", "--port", str(port)],
                              cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (query(env, "SELECT count(*) FROM shop_orderreport")[0][0] == 50
                   and (tmp_path / "exports" / "orders.csv").exists()
                   and reachable(f"127.0.0.1:{port}", 0.2)):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        with (tmp_path / "exports" / "orders.csv").open() as f:
            assert len(list(csv.DictReader(f))) == 50
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/admin/login/").status_code == 200
        refused = httpx.get(f"{base}/flows/", headers={"accept": "text/html"})
        assert refused.status_code == 303
        assert refused.headers["location"] == "/admin/login/?next=/flows/"

        manage(env, "shell", "-c", "from shop.models import Order; "
               "o = Order.objects.get(pk=7); o.status = 'shipped'; o.save()")
        result = json.loads(manage(env, "adf", "run", "sync_order_reports", "--json"))
        assert result["status"] == "succeeded"
        assert result["read"] in (0, 1)  # 0: the worker's scheduled run got there first
        assert query(env, "SELECT status FROM shop_orderreport WHERE id = 7") == [("shipped",)]
        schedule_runs = query(env, "SELECT count(*) FROM adf_runs WHERE trigger = 'schedule' "
                                   "AND status = 'succeeded'")[0][0]
        assert schedule_runs >= 2  # the worker ran both scheduled flows
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
