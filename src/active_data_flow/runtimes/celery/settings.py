"""Broker settings the Celery runtime relies on, and the start-up check that enforces them.

A run survives the loss of the worker executing it only if the broker still holds the task's
message: the message must be acknowledged *after* the task ran (``task_acks_late``), and a
task whose worker process died must be handed back to the broker, not acknowledged
(``task_reject_on_worker_lost``). :func:`check_app` refuses to start a worker without both.

Redis keeps a delivered, unacknowledged message in a hash and gives it back to the queue when
it is older than the *visibility timeout* and a live worker sweeps for such messages. kombu
sweeps every ``unacked_restore_interval`` seconds but scans Redis only on every
``unacked_restore_throttle``-th sweep (default 10 x 10 s), so with default options a lost task
comes back after up to visibility timeout + ~100 s, whatever the timeout. :class:`CelerySettings`
sets the throttle to 1, so the sweep period is ``restore_interval`` (docs/celery.md).

RabbitMQ gives a message back the moment the consumer's connection closes (a killed worker),
or when a delivery stays unacknowledged longer than the server's ``consumer_timeout``
(default 30 minutes, set in ``rabbitmq.conf``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from active_data_flow.connector import config_error
from active_data_flow.errors import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery  # type: ignore[import-untyped]

__all__ = ["BROKER_ENV", "CelerySettings", "broker_kind", "check_app", "settings_of"]

log = logging.getLogger(__name__)

BROKER_ENV = "ADF_CELERY_BROKER_URL"
_SCHEMES: dict[str, Literal["redis", "amqp"]] = {
    "redis": "redis", "rediss": "redis", "amqp": "amqp", "amqps": "amqp", "pyamqp": "amqp",
}


def broker_kind(url: str) -> Literal["redis", "amqp"]:
    """``"redis"`` or ``"amqp"`` (RabbitMQ) for a broker URL.

    Raises:
        ConfigurationError: any other scheme (the runtime is tested on these two only).
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise ConfigurationError(
            f"broker URL {_redact(url)!r}: the Celery runtime supports Redis (redis://, "
            "rediss://) and RabbitMQ (amqp://, amqps://, pyamqp://) brokers",
            option="broker_url",
        )
    return kind


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in creds else url


class CelerySettings(BaseModel):
    """How the Celery app reaches its broker and the flow store, and the timeouts it uses.

    Attributes:
        broker_url: Redis (``redis://host:6379/0``) or RabbitMQ (``amqp://user:pw@host//``).
            Default: ``ADF_CELERY_BROKER_URL``.
        store_url: the flow store's database. Default: ``ADF_DATABASE_URL`` (as the
            heartbeat's store).
        visibility_timeout: Redis only: seconds a delivered task may stay unacknowledged
            before Redis hands it to another worker. Keep it above your longest partition:
            a shorter one is safe (the second delivery finds the partition claimed and waits
            for it) but wastes deliveries.
        restore_interval: Redis only: how often each worker sweeps for tasks past their
            visibility timeout; a lost task is redelivered within visibility_timeout +
            restore_interval.
        lease_seconds: a partition's lease in the store; a partition whose worker stopped
            renewing it for this long may be taken over by a redelivered task (default: the
            store's, ``ADF_LEASE_SECONDS`` or 10).
        renew_seconds: how often a running partition renews its lease (default: a fifth of
            the lease).
        queue: the default queue (a flow's runtime may name another).
        prefetch_multiplier: tasks each worker process reserves; must be 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    broker_url: str = Field(default_factory=lambda: os.environ.get(BROKER_ENV, ""))
    store_url: str | None = Field(default_factory=lambda: os.environ.get("ADF_DATABASE_URL"))
    visibility_timeout: float = Field(default=3600.0, gt=0)
    restore_interval: float = Field(default=10.0, gt=0)
    lease_seconds: float | None = Field(default=None, gt=0)
    renew_seconds: float | None = Field(default=None, gt=0)
    queue: str = Field(default="active_data_flow", pattern=r"^[A-Za-z0-9_.:\-]{1,200}$")
    prefetch_multiplier: int = 1

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value:
            raise ValueError(f"no Celery broker URL: set broker_url under [celery] in adf.toml, "
                             f"or {BROKER_ENV} (or pass broker_url)")
        broker_kind(value)
        return value

    @classmethod
    def build(cls, **options: Any) -> CelerySettings:
        """Validate options (``None`` values take the default) into settings.

        Raises:
            ConfigurationError: naming the option at fault.
        """
        given = {k: v for k, v in options.items() if v is not None}
        try:
            return cls(**given)
        except pydantic.ValidationError as exc:
            raise config_error(exc, "Celery settings", cls) from None
        except ConfigurationError as exc:  # raised inside a validator
            raise ConfigurationError(str(exc), option="broker_url") from None

    @property
    def broker(self) -> Literal["redis", "amqp"]:
        """Which kind of broker ``broker_url`` names."""
        return broker_kind(self.broker_url)

    def celery_config(self) -> dict[str, Any]:
        """The Celery configuration these settings stand for (see the module docstring)."""
        config: dict[str, Any] = {
            "broker_url": self.broker_url,
            "broker_connection_retry_on_startup": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "task_acks_on_failure_or_timeout": True,
            "worker_prefetch_multiplier": self.prefetch_multiplier,
            # A worker that lost its broker connection cannot acknowledge what it runs; the
            # broker redelivers those tasks, so stop them rather than finish them twice.
            "worker_cancel_long_running_tasks_on_connection_loss": True,
            "task_ignore_result": True,
            "result_backend": None,
            "task_serializer": "json",
            "accept_content": ["json"],
            "task_default_queue": self.queue,
            "task_queue_max_priority": 9,
            "task_default_priority": 5,
            "worker_send_task_events": False,
            "worker_hijack_root_logger": False,
            "adf_settings": self.model_dump(),
        }
        if self.broker == "redis":
            config["broker_transport_options"] = {
                "visibility_timeout": self.visibility_timeout,
                "unacked_restore_interval": self.restore_interval,
                "unacked_restore_throttle": 1,
                # Priorities 0-9 as separate lists; kombu serves lower numbers first.
                "priority_steps": list(range(10)),
                "queue_order_strategy": "priority",
            }
        return config


def check_app(app: Celery, *, prefetch_multiplier: int | None = None) -> None:
    """Refuse settings under which a lost worker would lose or duplicate a run.

    Called before a worker starts consuming (``adf celery-worker`` and the worker bootstep
    installed by :func:`~active_data_flow.runtimes.celery.app.create_app`).

    Args:
        app: the Celery application.
        prefetch_multiplier: the worker's effective value when it overrides the app's.

    Raises:
        ConfigurationError: naming the unsafe setting and why it matters.
    """
    conf = app.conf
    if conf.task_always_eager:
        raise ConfigurationError(
            "task_always_eager is on: tasks would run in the process that enqueues them, with "
            "no broker and no redelivery; the Celery runtime needs real workers",
            option="task_always_eager",
        )
    if conf.task_acks_late is not True:
        raise ConfigurationError(
            "task_acks_late must be True: a task acknowledged before it runs is lost with the "
            "worker executing it", option="task_acks_late",
        )
    if conf.task_reject_on_worker_lost is not True:
        raise ConfigurationError(
            "task_reject_on_worker_lost must be True: otherwise the task of a worker process "
            "that died (SIGKILL, out of memory) is acknowledged instead of redelivered",
            option="task_reject_on_worker_lost",
        )
    prefetch = prefetch_multiplier if prefetch_multiplier is not None else (
        conf.worker_prefetch_multiplier)
    if prefetch != 1:
        raise ConfigurationError(
            f"worker_prefetch_multiplier is {prefetch}; it must be 1: a reserved task waits "
            "behind a long partition and is lost for that time with its worker (on Redis its "
            "visibility timeout runs while it waits)", option="worker_prefetch_multiplier",
        )
    url = str(conf.broker_url or "")
    if broker_kind(url) == "redis":
        _check_redis_options(dict(conf.broker_transport_options or {}))


def _check_redis_options(options: dict[str, Any]) -> None:
    timeout = float(options.get("visibility_timeout", 3600))
    if timeout <= 0:
        raise ConfigurationError("visibility_timeout must be positive",
                                 option="visibility_timeout")
    interval = float(options.get("unacked_restore_interval", 10))
    throttle = int(options.get("unacked_restore_throttle", 10))
    if interval * throttle > timeout:
        log.warning(
            "Redis broker: unacknowledged tasks are swept every %.0f s "
            "(unacked_restore_interval x unacked_restore_throttle), longer than the %.0f s "
            "visibility timeout: a lost task may wait that long to be redelivered",
            interval * throttle, timeout, extra={"action": "celery_restore_slow"},
        )


def settings_of(app: Celery) -> CelerySettings:
    """The runtime settings an app was created with."""
    stored = app.conf.get("adf_settings")
    if isinstance(stored, dict):
        return CelerySettings.build(**stored)
    return CelerySettings.build(broker_url=str(app.conf.broker_url or "") or None)
