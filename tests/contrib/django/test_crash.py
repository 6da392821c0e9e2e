"""Exactly-once with a SIGKILL during a run: a Django flow writing to the flow store's
database is killed at each crash point (``testapp/crash.py``), then recovered by a
heartbeat once its lease expired; every record ends up written exactly once, on SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

import signal
import time

import pytest

from tests.contrib.django.test_command import add_customers, manage, scalar

POINTS = [("mid_batch", 4), ("after_cursor_commit", 4), ("before_first_batch", 1),
          ("while_finishing", 1)]


@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[p for p, _ in POINTS])
def test_a_killed_run_resumes_and_writes_each_record_once(
        db_url: str, point: str, nth: int) -> None:
    lease = {"ADF_LEASE_SECONDS": "1"}
    manage(db_url, "migrate", "--run-syncdb", "-v", "0")
    add_customers(db_url, range(1, 101))
    manage(db_url, "adf", "sync")

    killed = manage(db_url, "adf", "run", "log_customers", check=False,
                    env_extra={**lease, "ADF_TEST_DJANGO_CRASH": f"{point}:{nth}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    written = scalar(db_url, "SELECT count(*) FROM testapp_copylog")
    assert written == {"mid_batch": 30, "after_cursor_commit": 40, "before_first_batch": 0,
                       "while_finishing": 100}[point]

    time.sleep(1.5)  # the dead run's lease expires
    manage(db_url, "adf", "heartbeat", env_extra=lease)  # reclaims it and runs the recovery

    assert scalar(db_url, "SELECT count(*) FROM testapp_copylog") == 100
    assert scalar(db_url, "SELECT count(DISTINCT customer_id) FROM testapp_copylog") == 100
    assert scalar(db_url, "SELECT status FROM adf_runs ORDER BY id DESC LIMIT 1") == "succeeded"
