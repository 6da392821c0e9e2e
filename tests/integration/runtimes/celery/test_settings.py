"""Broker settings, the start-up check that refuses unsafe ones, and the runtime's options."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtime import Runtime
from active_data_flow.runtimes.celery import Celery, CelerySettings, check_app, create_app
from active_data_flow.runtimes.celery.tasks import PARTITION_TASK, START_TASK
from tests.integration.runtimes.celery.harness import ROOT

REDIS = "redis://127.0.0.1:6379/3"


def test_settings_need_a_redis_or_rabbitmq_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADF_CELERY_BROKER_URL", raising=False)
    with pytest.raises(ConfigurationError, match="ADF_CELERY_BROKER_URL") as missing:
        CelerySettings.build()
    assert missing.value.option == "broker_url"
    with pytest.raises(ConfigurationError, match=r"Redis .* and RabbitMQ") as other:
        CelerySettings.build(broker_url="sqs://key:secret@")
    assert other.value.option == "broker_url"
    assert CelerySettings.build(broker_url="amqp://guest:guest@localhost//").broker == "amqp"


def test_redis_settings_sweep_for_lost_tasks_at_the_restore_interval() -> None:
    config = CelerySettings.build(broker_url=REDIS, visibility_timeout=30,
                                  restore_interval=2).celery_config()
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    options = config["broker_transport_options"]
    assert options["visibility_timeout"] == 30
    # kombu scans Redis on every `throttle`-th sweep only; 1 makes the interval the period.
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (2, 1)


def test_an_app_has_the_runtime_tasks_and_passes_its_own_check() -> None:
    app = create_app(broker_url=REDIS)
    assert {START_TASK, PARTITION_TASK} <= set(app.tasks)
    for name in (START_TASK, PARTITION_TASK):
        assert app.tasks[name].acks_late is True
        assert app.tasks[name].reject_on_worker_lost is True
    check_app(app)


@pytest.mark.parametrize(("setting", "value"), [
    ("task_acks_late", False),
    ("task_reject_on_worker_lost", False),
    ("worker_prefetch_multiplier", 4),
    ("task_always_eager", True),
])
def test_the_check_refuses_settings_that_lose_or_delay_runs(setting: str, value: Any) -> None:
    app = create_app(broker_url=REDIS)
    app.conf[setting] = value
    with pytest.raises(ConfigurationError, match=setting) as refused:
        check_app(app)
    assert refused.value.option == setting


def test_a_worker_with_late_acknowledgement_off_refuses_to_start() -> None:
    env = {**os.environ, "ADF_CELERY_BROKER_URL": REDIS, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.integration.runtimes.celery.unsafe_app",
         "worker", "--pool=solo", "-Q", "adf_t_never_consumed"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "task_acks_late must be True" in done.stdout + done.stderr


def test_the_runtime_validates_its_options_and_round_trips() -> None:
    runtime = Celery(interval=60, partitions=8, concurrency=2, queue="etl", priority=7,
                     concurrency_group="reporting", group_concurrency=3)
    assert Runtime.from_dict(runtime.to_dict()).config == runtime.config
    assert Runtime.from_dict({"type": "celery", "config": {}}).config.partitions == 1
    with pytest.raises(ConfigurationError, match="group_concurrency"):
        Celery(concurrency_group="reporting")
    with pytest.raises(ConfigurationError) as bad:
        Celery(partitions=0)
    assert bad.value.option == "partitions"
    with pytest.raises(ConfigurationError) as bad_queue:
        Celery(queue="no spaces")
    assert bad_queue.value.option == "queue"


def test_the_worker_command_explains_a_missing_broker_and_an_unmigrated_store(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from active_data_flow.cli.celery import celery_worker

    monkeypatch.delenv("ADF_CELERY_BROKER_URL", raising=False)
    no_broker = CliRunner().invoke(celery_worker, ["--database", postgres_url])
    assert no_broker.exit_code == 1
    assert "ADF_CELERY_BROKER_URL" in no_broker.output
    unmigrated = CliRunner().invoke(celery_worker, ["--broker", REDIS, "--database",
                                                    postgres_url])
    assert unmigrated.exit_code == 1
    assert "adf db upgrade" in unmigrated.output
